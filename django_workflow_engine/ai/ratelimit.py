"""AI rate limits (``WORKFLOW_ENGINE["AI_RATE_LIMITS"]``): one limiter port, a Redis and a database implementation.

A limit is requests (``rpm``) and/or tokens (``tpm``) per window (a minute; ``AI_RATE_LIMIT_WINDOW_SECONDS``),
for a model name or a glob pattern (``"anthropic/*"``). Each model has its own count, shared by every process
that uses the same Redis or database: never process-local.

Both limiters keep a **sliding window log**: every grant is a timestamped entry with its tokens, and a request is
granted only if the entries of the last window, plus this one, stay within the limit. So no rolling window ever
holds more than ``rpm`` grants (a token bucket would let up to twice that through across a window boundary).
Tokens are estimated before the call (prompt tokens by litellm's counter, plus ``max_tokens`` when given) and
corrected to the provider's reported usage after it.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from .costs import ModelSpec

LIMIT_KEYS = ("rpm", "tpm")


@dataclass(frozen=True)
class Limit:
    """The limit that applies to one model: at most ``rpm`` requests and ``tpm`` tokens per window."""

    pattern: str
    rpm: int | None = None
    tpm: int | None = None


@dataclass(frozen=True)
class Grant:
    """A limiter's answer: granted (with the grant's timestamp and a ticket to correct its tokens), or the
    seconds until the window has room for this request."""

    granted: bool
    at: datetime | None = None
    ticket: str | None = None
    wait_seconds: float = 0.0


class RateLimiter(Protocol):
    """The limiter port: counts requests and tokens per bucket across every process."""

    def acquire(self, bucket: str, limit: Limit, tokens: int, window: float) -> Grant:
        """Grant one request of ``tokens`` tokens now if the last ``window`` seconds leave room for it."""
        ...

    def correct(self, bucket: str, ticket: str, tokens: int, window: float) -> None:
        """Replace a grant's estimated tokens by the real count."""
        ...


def configured_limits() -> Mapping[str, Any]:
    from ..conf import settings

    return settings.AI_RATE_LIMITS or {}


def limit_for(spec: ModelSpec, limits: Mapping[str, Any]) -> Limit | None:
    """The limit for a model: an exact name (the model key, then the litellm model id) before glob patterns,
    patterns in the setting's order. ``None``: the model is not limited."""
    names = [spec.key, spec.model_id]
    pattern = next((n for n in names if n in limits), None)
    if pattern is None:
        pattern = next(
            (p for p in limits if any(c in p for c in "*?[") and any(fnmatch.fnmatchcase(n, p) for n in names)),
            None,
        )
    if pattern is None:
        return None
    values = limits[pattern] or {}
    return Limit(pattern, rpm=values.get("rpm"), tpm=values.get("tpm"))


def limiter_kind() -> str:
    """``"redis"`` or ``"database"``: ``AI_RATE_LIMITER``, where ``"auto"`` means Redis when TRANSPORT is "rq"."""
    from ..conf import settings

    choice = settings.AI_RATE_LIMITER
    if choice == "auto":
        return "redis" if settings.TRANSPORT == "rq" else "database"
    return str(choice)


def estimate_tokens(spec: ModelSpec, request: Mapping[str, Any]) -> int:
    """Tokens a request will use, before it is sent: its input by litellm's counter (a character-based guess when
    litellm does not know the model), plus ``max_tokens`` when the call sets it."""
    from .costs import load_litellm

    options = request.get("options") or {}
    out = options.get("max_tokens") or options.get("max_completion_tokens") or 0
    try:
        if "messages" in request:
            counted = load_litellm().token_counter(model=spec.model_id, messages=request["messages"])
        else:
            counted = load_litellm().token_counter(model=spec.model_id, text=list(map(str, request["input"])))
    except Exception:
        text = str(request.get("messages") or request.get("input") or "")
        counted = math.ceil(len(text) / 4)
    return int(counted) + int(out)


def problems(limits: Any, known_model: Any) -> list[tuple[str, str]]:
    """What is wrong with an ``AI_RATE_LIMITS`` value, as ``(kind, sentence)`` pairs: ``"shape"`` (a malformed
    entry) or ``"model"`` (a name or pattern no known model matches).

    Args:
        known_model: ``known_model(name_or_pattern) -> bool``, whether litellm's price map or ``AI_MODELS``
            knows the model (for a pattern: at least one model it matches).
    """
    if not isinstance(limits, Mapping):
        return [("shape", f"must be a dict of model name or pattern -> {{'rpm': ..., 'tpm': ...}}, not {limits!r}")]
    found = []
    for pattern, values in limits.items():
        if not isinstance(pattern, str) or not pattern:
            found.append(("shape", f"key {pattern!r} is not a model name or pattern"))
            continue
        if not isinstance(values, Mapping):
            found.append(
                ("shape", f"{pattern!r} must map to a dict like {{'rpm': 500, 'tpm': 200000}}, not {values!r}")
            )
            continue
        unknown = sorted(map(str, set(values) - set(LIMIT_KEYS)))
        if unknown:
            found.append(("shape", f"{pattern!r} has unknown key(s) {', '.join(map(repr, unknown))}; use 'rpm', 'tpm'"))
        if not any(k in values for k in LIMIT_KEYS):
            found.append(
                ("shape", f"{pattern!r} sets neither 'rpm' (requests per minute) nor 'tpm' (tokens per minute)")
            )
        for key in LIMIT_KEYS:
            value = values.get(key)
            if key in values and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                found.append(("shape", f"{pattern!r}: {key!r} must be a positive whole number, not {value!r}"))
        if not known_model(pattern):
            found.append(("model", f"{pattern!r} matches no model that litellm's price map or AI_MODELS knows"))
    return found
