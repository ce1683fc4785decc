"""System checks for the AI traffic settings: ``AI_RATE_LIMITS`` and its knobs, ``AI_CACHE`` (E060-E069)."""

from __future__ import annotations

import fnmatch
import functools
import json
import math
from typing import Any

from django.core import checks

from ..conf import settings
from .ratelimit import problems

NUMBERS = {
    # key: (smallest allowed, strictly greater?)
    "AI_RATE_LIMIT_WAIT_SECONDS": (0.0, False),
    "AI_RATE_LIMIT_WINDOW_SECONDS": (0.0, True),
    "AI_RATE_LIMIT_RETRY_AFTER_SECONDS": (0.0, True),
}


def _error(msg: str, hint: str, n: int) -> checks.Error:
    return checks.Error(msg, hint=hint, id=f"django_workflow_engine.E{n:03d}")


@functools.lru_cache(maxsize=1)
def litellm_model_names() -> frozenset[str]:
    """The models of litellm's bundled price map, as ``name`` and ``provider/name``, read from its JSON file
    (importing litellm takes seconds; ``manage.py check`` should not)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("litellm")
    if spec is None or spec.origin is None:
        return frozenset()
    path = Path(spec.origin).parent / "model_prices_and_context_window_backup.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return frozenset()
    names = set()
    for name, info in data.items():
        names.add(name)
        provider = info.get("litellm_provider") if isinstance(info, dict) else None
        if provider and not name.startswith(f"{provider}/"):
            names.add(f"{provider}/{name}")
    return frozenset(names)


def known_model(pattern: str) -> bool:
    """Whether a model name or glob matches a model of ``AI_MODELS`` or litellm's price map."""
    custom = set()
    for key, entry in (settings.AI_MODELS or {}).items() if isinstance(settings.AI_MODELS, dict) else ():
        custom.add(key)
        if isinstance(entry, dict) and entry.get("model"):
            custom.add(str(entry["model"]))
    names = custom | litellm_model_names()
    if not names:  # litellm is not installed: nothing to check against
        return True
    if not any(c in pattern for c in "*?["):
        return pattern in names
    return any(fnmatch.fnmatchcase(name, pattern) for name in names)


@checks.register()
def check_ai_traffic(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E060 malformed AI_RATE_LIMITS, E061 an unknown model in it, E062 AI_RATE_LIMITER, E063 the limits' numbers,
    E064 AI_CACHE."""
    errors: list[checks.CheckMessage] = []
    example = "e.g. AI_RATE_LIMITS = {'gpt-4o-mini': {'rpm': 500, 'tpm': 200_000}, 'anthropic/*': {'rpm': 50}}"
    for kind, problem in problems(settings.AI_RATE_LIMITS, known_model):
        if kind == "model":
            errors.append(
                _error(
                    f"WORKFLOW_ENGINE['AI_RATE_LIMITS']: {problem}.",
                    "Use the model name you pass to the AI helper (a litellm name such as 'gpt-4o-mini' or "
                    "'anthropic/claude-3-5-haiku-20241022', or a key of AI_MODELS), or a glob such as 'anthropic/*'.",
                    61,
                )
            )
        else:
            errors.append(_error(f"WORKFLOW_ENGINE['AI_RATE_LIMITS']: {problem}.", example, 60))
    choice = settings.AI_RATE_LIMITER
    if choice not in ("auto", "redis", "database"):
        errors.append(
            _error(
                f"WORKFLOW_ENGINE['AI_RATE_LIMITER'] is {choice!r}.",
                "Use 'auto' (Redis with TRANSPORT 'rq', else the database), 'redis' or 'database'.",
                62,
            )
        )
    elif choice == "redis" and settings.TRANSPORT != "rq":
        from django.conf import settings as dj

        if settings.RQ_QUEUE not in (getattr(dj, "RQ_QUEUES", {}) or {}):
            errors.append(
                _error(
                    "WORKFLOW_ENGINE['AI_RATE_LIMITER'] is 'redis' but RQ_QUEUES has no queue "
                    f"{settings.RQ_QUEUE!r} to take the Redis connection from.",
                    f"Add RQ_QUEUES = {{{settings.RQ_QUEUE!r}: {{'URL': 'redis://localhost:6379/0'}}}}, "
                    "or use AI_RATE_LIMITER = 'database'.",
                    62,
                )
            )
    for key, (low, strict) in NUMBERS.items():
        value = getattr(settings, key)
        number = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
        if not number or value < low or (strict and value == low):
            bound = "a positive number" if strict else "a number >= 0"
            errors.append(_error(f"WORKFLOW_ENGINE[{key!r}] is {value!r}.", f"Set {key} to {bound} of seconds.", 63))
    cache = settings.AI_CACHE
    valid_ttl = not isinstance(cache, bool) and isinstance(cache, int | float) and math.isfinite(cache) and cache > 0
    if not isinstance(cache, bool) and cache is not None and not valid_ttl:
        errors.append(
            _error(
                f"WORKFLOW_ENGINE['AI_CACHE'] is {cache!r}.",
                "Use False (off; calls may still pass cache=True), True (every call, 1 hour) or a TTL in seconds.",
                64,
            )
        )
    return errors
