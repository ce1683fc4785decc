"""Runs a stage's user code and turns whatever happens into an :class:`Outcome` (never raises for user errors)."""

from __future__ import annotations

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
    StageDeferred,
    format_validation_errors,
)
from ..core.stage import Stage, StageResult, run_callable, to_json_output
from .flow import error_message

NON_RETRYABLE = (InvalidInput, InvalidOutput, ValidationError, MissingStageOutput, BudgetExceeded)


@dataclass
class Outcome:
    kind: str  # "completed" | "suspended" | "failed" | "deferred"
    output: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: Mapping[str, Any] = field(default_factory=dict)
    suspend: Suspend | None = None
    error: str | None = None
    retryable: bool = True
    traceback: str | None = None  # of the exception a failed stage raised, kept with its ERROR log line
    defer_until: datetime | None = None  # "deferred": due again then, same attempt (``error`` is the reason)


def parse_config(stage: Stage, raw: Mapping[str, Any] | None) -> Any:
    try:
        return stage.parse_config(raw)
    except ValidationError as exc:
        raise InvalidInput(f"Invalid config for stage {stage.id!r}: {format_validation_errors(exc.errors())}") from None


def execute_stage(stage: Stage, ctx: StageContext) -> Outcome:
    """Call ``stage.execute(ctx)`` and classify the result."""
    try:
        returned = run_callable(stage.execute, ctx)
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
    except NON_RETRYABLE as exc:
        return Outcome("failed", error=error_message(exc), retryable=False, traceback=format_traceback(exc))
    except Exception as exc:
        return Outcome("failed", error=error_message(exc), retryable=True, traceback=format_traceback(exc))


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
