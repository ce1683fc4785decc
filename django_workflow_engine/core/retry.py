"""Retry policies and time limits of stages and runs: :class:`RetryPolicy`, :func:`check_timeout`."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .errors import NonRetryableError, WorkflowDefinitionError

Seconds = float | int | timedelta


def check_timeout(owner: str, name: str, value: Seconds | None) -> float | None:
    """``value`` as positive seconds (``None`` stays ``None``: no limit).

    Raises:
        WorkflowDefinitionError: naming ``owner`` and ``name`` for a zero, negative, NaN or non-number value.
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise WorkflowDefinitionError(
            f"{owner}: {name} must be a number of seconds or a timedelta, got {type(value).__name__} {value!r}."
        )
    if math.isnan(seconds) or math.isinf(seconds) or seconds <= 0:
        raise WorkflowDefinitionError(f"{owner}: {name} must be a positive number of seconds, got {value!r}.")
    return seconds


def _exception_types(owner: str, name: str, value: Any) -> tuple[type[BaseException], ...]:
    items = (value,) if isinstance(value, type) else tuple(value or ())
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise WorkflowDefinitionError(f"{owner}: {name} must hold exception classes, got {item!r}.")
    return items


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed stage is retried. Fields left ``None`` take the settings' defaults.

    Attempt ``n`` (1-based) that fails waits ``min(backoff_base * 2**(n-1), max_interval)`` seconds, shortened
    by up to ``jitter`` of itself at random (``jitter=0.2``: between 80 % and 100 % of the delay), so that
    runs failing together do not retry together.

    Attributes:
        max_attempts: attempts before the stage fails for good (``WORKFLOW_ENGINE["MAX_ATTEMPTS"]``).
        backoff_base: seconds before the first retry (``WORKFLOW_ENGINE["RETRY_BASE_SECONDS"]``).
        max_interval: the longest wait between attempts (``WORKFLOW_ENGINE["RETRY_MAX_INTERVAL_SECONDS"]``).
        jitter: a fraction in [0, 1] (``WORKFLOW_ENGINE["RETRY_JITTER"]``).
        retry_on: when given, only these exception types are retried; any other fails the stage at once.
        dont_retry_on: exception types that fail the stage at once (checked first). A stage may also raise
            :class:`~django_workflow_engine.errors.NonRetryableError` itself.
    """

    max_attempts: int | None = None
    backoff_base: float | None = None
    max_interval: float | None = None
    jitter: float | None = None
    retry_on: tuple[type[BaseException], ...] = ()
    dont_retry_on: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        owner = "RetryPolicy"
        if self.max_attempts is not None and (
            isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1
        ):
            raise WorkflowDefinitionError(
                f"{owner}: max_attempts must be a positive integer, got {self.max_attempts!r}."
            )
        for name in ("backoff_base", "max_interval"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, timedelta):
                object.__setattr__(self, name, value.total_seconds())
                value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) or value < 0:
                raise WorkflowDefinitionError(f"{owner}: {name} must be a number of seconds >= 0, got {value!r}.")
        if self.jitter is not None and (
            isinstance(self.jitter, bool)
            or not isinstance(self.jitter, int | float)
            or math.isnan(self.jitter)
            or not 0 <= self.jitter <= 1
        ):
            raise WorkflowDefinitionError(f"{owner}: jitter must be a fraction between 0 and 1, got {self.jitter!r}.")
        object.__setattr__(self, "retry_on", _exception_types(owner, "retry_on", self.retry_on))
        object.__setattr__(self, "dont_retry_on", _exception_types(owner, "dont_retry_on", self.dont_retry_on))

    def retryable(self, exc: BaseException) -> bool:
        """Whether ``exc`` may be retried under this policy (attempts left aside)."""
        if isinstance(exc, (NonRetryableError, *self.dont_retry_on)):
            return False
        return not self.retry_on or isinstance(exc, self.retry_on)

    def delay(self, attempt: int, defaults: RetryPolicy, rng: random.Random | None = None) -> timedelta:
        """The wait after failed attempt ``attempt`` (1-based), fields missing here taken from ``defaults``."""
        base = _first(self.backoff_base, defaults.backoff_base, 2.0)
        ceiling = _first(self.max_interval, defaults.max_interval, math.inf)
        jitter = _first(self.jitter, defaults.jitter, 0.0)
        seconds = min(base * 2 ** max(0, attempt - 1), ceiling)
        if jitter and seconds:
            seconds *= 1 - jitter * (rng or random).random()
        return timedelta(seconds=seconds)


def _first(*values: float | None) -> float:
    return next(float(v) for v in values if v is not None)


NO_POLICY = RetryPolicy()
