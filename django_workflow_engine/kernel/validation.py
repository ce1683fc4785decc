"""Checks of the plain arguments of engine calls, made before anything is written.

Each limit matches what every supported database can store (PostgreSQL rejects ``\\x00`` in text and jsonb,
``integer`` columns hold 32 bits, ``max_cost`` is ``numeric(20, 10)``), so a bad value is refused with an error
naming the argument instead of a database error deep inside a transaction.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from ..core.errors import (
    InvalidDeadline,
    InvalidIdempotencyKey,
    InvalidMaxCost,
    InvalidMetadata,
    InvalidPriority,
    InvalidReason,
    InvalidStartTime,
    InvalidWorkflowId,
    RunNotFound,
)
from ..core.jsonsafe import JSONValueError, check_json_value

PRIORITY_MIN = -(2**31)
PRIORITY_MAX = 2**31 - 1
MAX_COST_LIMIT = Decimal(10) ** 10  # numeric(20, 10): ten digits before the point
MAX_METADATA_BYTES = 64 * 1024
MAX_IDEMPOTENCY_KEY_LENGTH = 255
MAX_REASON_LENGTH = 4000


def _storable_text(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or ``None``."""
    if "\x00" in value:
        return "contains a NUL character (\\x00), which databases cannot store"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate and is not valid UTF-8"
    return None


def _short(value: Any) -> str:
    if isinstance(value, int) and not -(10**30) < value < 10**30:
        return f"an integer of {value.bit_length()} bits"
    return f"{value!r:.100}"


def check_workflow_id(workflow_id: Any) -> None:
    if not isinstance(workflow_id, str):
        raise InvalidWorkflowId("workflow_id", f"must be a string, got {type(workflow_id).__name__}")


def check_priority(priority: Any) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidPriority("priority", f"must be an integer, got {_short(priority)}")
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise InvalidPriority("priority", f"must be between {PRIORITY_MIN} and {PRIORITY_MAX}, got {_short(priority)}")
    return priority


def check_max_cost(value: Any) -> Decimal | None:
    """The budget as a ``Decimal`` (``None`` for no budget)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise InvalidMaxCost("max_cost", f"must be a number, got {type(value).__name__}")
    if isinstance(value, int) and abs(value) >= MAX_COST_LIMIT:
        raise InvalidMaxCost("max_cost", f"must be less than 10000000000 (1e10), got {_short(value)}")
    try:
        amount = Decimal(value) if isinstance(value, int) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise InvalidMaxCost("max_cost", f"must be a number, got {_short(value)}") from None
    if not amount.is_finite() or amount < 0:
        raise InvalidMaxCost("max_cost", f"must be a finite number >= 0, got {_short(value)}")
    if amount >= MAX_COST_LIMIT:
        raise InvalidMaxCost("max_cost", f"must be less than 10000000000 (1e10), got {_short(value)}")
    return amount


def check_metadata(metadata: Any) -> None:
    """``None`` or a JSON object of storable values, at most ``MAX_METADATA_BYTES`` as compact JSON."""
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise InvalidMetadata("metadata", f"must be a JSON object (dict) or None, got {type(metadata).__name__}")
    try:
        check_json_value(metadata)
    except JSONValueError as exc:
        raise InvalidMetadata("metadata", f"field {exc}") from None
    size = len(json.dumps(metadata, separators=(",", ":")).encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise InvalidMetadata(
            "metadata", f"is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES}. Keep large data in the input."
        )


def check_idempotency_key(key: Any, field: str = "idempotency_key") -> None:
    if not isinstance(key, str):
        raise InvalidIdempotencyKey(field, f"must be a string, got {type(key).__name__}")
    if not key:
        raise InvalidIdempotencyKey(field, "must not be empty")
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise InvalidIdempotencyKey(
            field,
            f"is {len(key)} characters long; the limit is {MAX_IDEMPOTENCY_KEY_LENGTH} (hash longer keys first)",
        )
    problem = _storable_text(key)
    if problem:
        raise InvalidIdempotencyKey(field, problem)


def check_reason(reason: Any) -> None:
    if reason is None:
        return
    if not isinstance(reason, str):
        raise InvalidReason("reason", f"must be a string or None, got {type(reason).__name__}")
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidReason("reason", f"is {len(reason)} characters long; the limit is {MAX_REASON_LENGTH}")
    problem = _storable_text(reason)
    if problem:
        raise InvalidReason("reason", problem)


def check_deadline(value: Any, now: datetime) -> datetime | None:
    """A run ``deadline`` (an aware datetime, or seconds from ``now`` as a number or ``timedelta``) as the
    datetime it falls at; ``None`` for none."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidDeadline("deadline", f"must be an aware datetime (with a timezone), got {value.isoformat()}")
        if value <= now:
            raise InvalidDeadline("deadline", f"{value.isoformat()} has already passed")
        return value
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidDeadline(
            "deadline", f"must be a datetime, a timedelta or a number of seconds, got {type(value).__name__}"
        )
    if math.isnan(seconds) or math.isinf(seconds) or seconds <= 0:
        raise InvalidDeadline("deadline", f"must be a positive duration, got {_short(value)}")
    if seconds > 100 * 365 * 24 * 3600:
        raise InvalidDeadline("deadline", f"must be at most 100 years away, got {_short(value)}")
    return now + timedelta(seconds=seconds)


def check_run_id(run_id: Any) -> str:
    """A run id that cannot exist (not text, or text no database stores) is reported as not found."""
    if not isinstance(run_id, str) or _storable_text(run_id):
        raise RunNotFound(str(run_id)[:100])
    return run_id


def validate_run_arguments(command: Any) -> Decimal | None:
    """Check a ``CreateRun``'s plain arguments (not input or config: the workflow checks those).

    Returns the ``max_cost`` as a ``Decimal``.
    """
    check_workflow_id(command.workflow_id)
    check_priority(command.priority)
    check_metadata(command.metadata)
    if command.idempotency_key is not None:
        check_idempotency_key(command.idempotency_key)
    return check_max_cost(command.max_cost)


MAX_DELAY = timedelta(days=3660)  # ten years: a datetime every database stores, a bound against unit mistakes


def start_time(start_at: Any, delay: Any, now: datetime) -> datetime | None:
    """The time a delayed start's first group is due, from ``start_at`` (an aware datetime) or ``delay``
    (seconds or a ``timedelta``) counted from ``now``; ``None`` when neither is given or the time is not
    after ``now`` (the run starts at once). Raises ``InvalidStartTime`` naming the argument."""
    if start_at is not None and delay is not None:
        raise InvalidStartTime("start_at", "start_at and delay: give one of them, not both.")
    if start_at is not None:
        if not isinstance(start_at, datetime):
            raise InvalidStartTime("start_at", f"start_at must be a datetime, not {type(start_at).__name__}.")
        if start_at.tzinfo is None or start_at.utcoffset() is None:
            raise InvalidStartTime(
                "start_at",
                f"start_at must be timezone-aware (got the naive {start_at.isoformat()}); "
                "pass e.g. django.utils.timezone.make_aware(value) or a datetime with tzinfo.",
            )
        due = start_at
    elif delay is not None:
        if isinstance(delay, bool) or not isinstance(delay, (int, float, timedelta)):
            raise InvalidStartTime(
                "delay", f"delay must be seconds (int or float) or a timedelta, not {type(delay).__name__}."
            )
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
        if not math.isfinite(seconds) or seconds < 0:
            raise InvalidStartTime("delay", f"delay must be a finite number of seconds >= 0, not {delay!r}.")
        if seconds > MAX_DELAY.total_seconds():
            raise InvalidStartTime("delay", f"delay of {seconds:.0f} s is over the limit of {MAX_DELAY.days} days.")
        due = now + timedelta(seconds=seconds)
    else:
        return None
    if due - now > MAX_DELAY:
        raise InvalidStartTime("start_at", f"start_at {due.isoformat()} is more than {MAX_DELAY.days} days ahead.")
    return due if due > now else None
