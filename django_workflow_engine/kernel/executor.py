"""Runs a stage's user code and turns whatever happens into an :class:`Outcome` (never raises for user errors)."""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from ..core.batch import Suspend
from ..core.context import StageContext
from ..core.errors import (
    BudgetExceeded,
    InvalidInput,
    InvalidOutput,
    MissingStageOutput,
    NonRetryableError,
    RunDeadlineExceeded,
    RunNotRunning,
    StageDeferred,
    StageTimedOut,
    format_validation_errors,
)
from ..core.stage import Stage, StageResult, to_json_output
from .flow import error_message
from .timeouts import call_with_timeout

NON_RETRYABLE = (
    InvalidInput,
    InvalidOutput,
    ValidationError,
    MissingStageOutput,
    BudgetExceeded,
    NonRetryableError,
    RunNotRunning,
)


@dataclass
class Outcome:
    kind: str  # "completed" | "suspended" | "failed" | "deferred"
    output: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: Mapping[str, Any] = field(default_factory=dict)
    suspend: Suspend | None = None
    error: str | None = None
    retryable: bool = True
    traceback: str | None = None  # of the exception a failed stage raised, stored on the stage
    error_type: str | None = None  # its class, "module.Name"
    defer_until: datetime | None = None  # "deferred": due again then, same attempt (``error`` is the reason)


def parse_config(stage: Stage, raw: Mapping[str, Any] | None) -> Any:
    try:
        return stage.parse_config(raw)
    except ValidationError as exc:
        raise InvalidInput(f"Invalid config for stage {stage.id!r}: {format_validation_errors(exc.errors())}") from None


def execute_stage(
    stage: Stage, ctx: StageContext, timeout: float | None = None, run_left: float | None = None
) -> Outcome:
    """Call ``stage.execute(ctx)`` and classify the result. The code is interrupted where possible (see
    :mod:`.timeouts`) after ``timeout`` seconds, or after ``run_left`` seconds, when its run's deadline comes
    first (then the stage fails for good: the run is over)."""
    limit = timeout if run_left is None or (timeout is not None and timeout <= run_left) else max(run_left, 0.001)
    began = time.monotonic()
    outcome = _execute(stage, ctx, limit)
    interrupted = outcome.kind == "failed" and outcome.error_type == TIMED_OUT
    if interrupted and limit is not timeout:
        stopped = failure(RunDeadlineExceeded(stage.id), False)
        stopped.traceback = outcome.traceback  # where the stage was when the deadline came
        return stopped
    if limit is not None and outcome.kind != "failed" and time.monotonic() - began > limit:
        # Stage code that could not be interrupted (see timeouts.py): its late result is discarded.
        exc: Exception = StageTimedOut(stage.id, limit) if limit is timeout else RunDeadlineExceeded(stage.id)
        return failure(exc, limit is timeout and stage.retry.retryable(exc))
    return outcome


def _execute(stage: Stage, ctx: StageContext, timeout: float | None) -> Outcome:
    try:
        returned = call_with_timeout(stage.execute, ctx, timeout, stage.id, lambda: ctx.cancelled)
        if isinstance(returned, Suspend):
            if stage.mode != "async-batch":
                return Outcome(
                    "failed",
                    error=f"Stage {stage.id!r} returned Suspend but is not an async-batch stage (use define_async_batch_stage).",
                    retryable=False,
                )
            return Outcome("suspended", suspend=returned, metrics=dict(returned.custom_metrics))
        if isinstance(returned, StageResult):
            output = to_json_output(stage.output, returned.output, stage.id)
            metrics = _metrics(returned.custom_metrics, stage.id)
            artifacts = {name: to_json_output(None, value, stage.id) for name, value in returned.artifacts.items()}
            return Outcome("completed", output=output, metrics=metrics, artifacts=artifacts)
        return Outcome("completed", output=to_json_output(stage.output, returned, stage.id))
    except StageDeferred as exc:
        return Outcome("deferred", error=exc.reason, defer_until=exc.until)
    except Exception as exc:
        return failure(exc, not isinstance(exc, NON_RETRYABLE) and stage.retry.retryable(exc))


def _type_name(kind: type) -> str:
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


TIMED_OUT = _type_name(StageTimedOut)


def failure(exc: BaseException, retryable: bool) -> Outcome:
    """A failed outcome carrying ``exc``'s message, type and traceback."""
    return Outcome(
        "failed",
        error=error_message(exc),
        retryable=retryable,
        traceback=format_traceback(exc),
        error_type=_type_name(type(exc)),
    )


TRACEBACK_CHARS = 20_000


def format_traceback(exc: BaseException) -> str:
    """The exception's traceback as text, its last ``TRACEBACK_CHARS`` characters (where the error is)."""
    text = "".join(traceback.format_exception(exc))
    return text if len(text) <= TRACEBACK_CHARS else "…" + text[-TRACEBACK_CHARS:]


def _metrics(custom: Mapping[str, Any], stage_id: str) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    for name, value in custom.items():
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise InvalidOutput(
                f"Stage {stage_id!r} returned custom metric {name!r} = {value!r}; metrics must be numbers."
            )
        metrics[name] = value
    return metrics
