"""One logical AI call through rate limits and fallbacks: which model is sent the request, and when.

:func:`send` tries the requested model, then each fallback. A model is skipped when its rate limit
(``AI_RATE_LIMITS``) has no room now, and given up on when the provider answers with a rate limit (429), a
timeout or a server error (5xx); every provider attempt is an ``AICall`` row. When no model answered because
of rate limits, the call waits for the earliest one to have room if that is within
``AI_RATE_LIMIT_WAIT_SECONDS``, and otherwise raises :class:`~django_workflow_engine.errors.RateLimited` (inside
a stage's execute, the stage is then deferred until then without using a retry attempt).
"""

from __future__ import annotations

import email.utils
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from ..core.errors import InvalidArgument, RateLimited
from .costs import ModelSpec
from .ratelimit import Grant, Limit, RateLimiter, configured_limits, estimate_tokens, limit_for, limiter_kind
from .recording import run_sync

if TYPE_CHECKING:
    from .ledger import CallLedger

# Errors after which the next model is tried: the provider is overloaded or failing, not the request.
TRANSIENT = ("Timeout", "APIConnectionError", "InternalServerError", "ServiceUnavailableError", "BadGatewayError")


@dataclass(frozen=True)
class Sent:
    """A call a model answered."""

    spec: ModelSpec
    response: Any
    started: float  # time.monotonic() when it was sent
    sent_at: datetime | None  # the rate limit's grant time (the row's timestamp), when a limit applied
    metadata: dict[str, Any]
    ticket: tuple[str, str] | None = None  # (bucket, ticket) to correct the grant's tokens

    def correct_tokens(self, total_tokens: int) -> None:
        """Replace the grant's token estimate by what the provider reported."""
        if self.ticket is None:
            return
        bucket, ticket = self.ticket
        from ..conf import settings

        window = float(settings.AI_RATE_LIMIT_WINDOW_SECONDS)
        run_sync(lambda: limiter().correct(bucket, ticket, total_tokens, window))


@dataclass(frozen=True)
class Traffic:
    """A call's traffic options: models to try after the requested one, and its response cache choice."""

    fallbacks: tuple[str, ...] = ()
    cache: bool | float | None = None

    @classmethod
    def of(cls, fallbacks: Sequence[str] | None, cache: bool | float | None) -> Traffic:
        """Checked options of one call.

        Raises:
            InvalidArgument: ``fallbacks`` is not a list of model names, or ``cache`` not a bool or a TTL.
        """
        if fallbacks is None:
            fallbacks = ()
        if isinstance(fallbacks, str) or not all(isinstance(m, str) and m for m in fallbacks):
            raise InvalidArgument("fallbacks", f"expected a list of model names, e.g. ['gpt-4o'], got {fallbacks!r}")
        if cache is not None and not isinstance(cache, bool):
            ok = isinstance(cache, int | float) and math.isfinite(cache) and cache > 0
            if not ok:
                raise InvalidArgument("cache", f"expected True, False or a TTL in seconds > 0, got {cache!r}")
        return cls(tuple(fallbacks), cache)


def classify(exc: BaseException) -> str | None:
    """``"rate_limit"`` (429), ``"transient"`` (timeout, 5xx, connection), or ``None`` (the request is at fault:
    no other model is tried). litellm's exception classes are matched by name and status, so litellm is not
    imported for this."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    status = getattr(exc, "status_code", None)
    if "RateLimitError" in names or status == 429:
        return "rate_limit"
    if names & set(TRANSIENT) or (isinstance(status, int) and status >= 500):
        return "transient"
    return None


def retry_after(exc: BaseException, default: float) -> float:
    """Seconds a provider's 429 asks to wait: its ``retry-after-ms`` or ``retry-after`` header (seconds or an
    HTTP date), else ``default``."""
    headers: Any = getattr(exc, "litellm_response_headers", None) or getattr(
        getattr(exc, "response", None), "headers", None
    )
    if not headers:
        return default
    lowered = {str(k).lower(): v for k, v in dict(headers).items()}
    try:
        if "retry-after-ms" in lowered:
            return max(float(lowered["retry-after-ms"]) / 1000, 0.0)
        value = lowered.get("retry-after")
        if value is None:
            return default
        try:
            return max(float(value), 0.0)
        except ValueError:
            when = email.utils.parsedate_to_datetime(str(value))
            return max((when - timezone.now()).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return default


def send(
    ledger: CallLedger,
    specs: Sequence[ModelSpec],
    request: Mapping[str, Any],
    call: Callable[[ModelSpec], Any],
    on_failure: Callable[[ModelSpec, BaseException, float, dict[str, Any]], None],
    *,
    in_stage: bool,
) -> Sent:
    """Send one logical call to the first model of ``specs`` that has room and answers.

    Args:
        request: ``{"messages": ...}`` or ``{"input": ...}`` plus ``"options"``, for the token estimate.
        call: sends the request to one model (a provider call).
        on_failure: records a failed provider attempt.
        in_stage: inside a stage's execute: a provider 429 beyond the brief wait defers the stage (raises
            RateLimited); elsewhere the provider's error is raised.

    Raises:
        RateLimited: every model is over its limit for longer than the brief wait.
        Exception: the last model's provider error.
    """
    from ..conf import settings

    limits = configured_limits()
    window = float(settings.AI_RATE_LIMIT_WINDOW_SECONDS)
    give_up_at = time.monotonic() + float(settings.AI_RATE_LIMIT_WAIT_SECONDS)
    requested = specs[0].key
    while True:
        held: tuple[datetime, str] | None = None  # earliest time a model has room again, and that model
        provider_error: BaseException | None = None
        for position, spec in enumerate(specs):
            limit = limit_for(spec, limits) if limits else None
            grant = _acquire(spec, limit, request, window) if limit is not None else None
            if grant is not None and not grant.granted:
                until = timezone.now() + timedelta(seconds=grant.wait_seconds)
                held = min(held, (until, spec.key)) if held else (until, spec.key)
                continue
            metadata: dict[str, Any] = {}
            if position:
                metadata["fallback_for"] = requested
            if grant is not None:
                metadata["rate_limit"] = limit.pattern if limit else None
            started = time.monotonic()
            try:
                response = run_sync(functools.partial(call, spec))
            except Exception as exc:
                on_failure(spec, exc, started, metadata)
                kind = classify(exc)
                if kind is None:
                    raise
                provider_error = exc
                if kind == "rate_limit":
                    default = float(settings.AI_RATE_LIMIT_RETRY_AFTER_SECONDS)
                    until = timezone.now() + timedelta(seconds=retry_after(exc, default))
                    held = min(held, (until, spec.key)) if held else (until, spec.key)
                elif position == len(specs) - 1 and held is None:
                    raise
                continue
            tpm = limit is not None and limit.tpm
            ticket = (spec.model_id, grant.ticket) if grant is not None and grant.ticket and tpm else None
            return Sent(spec, response, started, grant.at if grant else None, metadata, ticket)
        if held is None:
            assert provider_error is not None
            raise provider_error
        until, model = held
        wait = (until - timezone.now()).total_seconds()
        if time.monotonic() + wait <= give_up_at:
            time.sleep(max(wait, 0.005))
            continue
        if provider_error is not None and not in_stage and classify(provider_error) == "rate_limit":
            raise provider_error
        raise RateLimited(model, until)


def limiter() -> RateLimiter:
    """The configured limiter (see :func:`~django_workflow_engine.ai.ratelimit.limiter_kind`)."""
    if limiter_kind() == "redis":
        from .ratelimit_redis import RedisRateLimiter

        return RedisRateLimiter()
    from .ratelimit_db import DatabaseRateLimiter

    return DatabaseRateLimiter()


def _acquire(spec: ModelSpec, limit: Limit, request: Mapping[str, Any], window: float) -> Grant:
    tokens = estimate_tokens(spec, request) if limit.tpm else 0
    return run_sync(lambda: limiter().acquire(spec.model_id, limit, tokens, window))
