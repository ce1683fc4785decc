"""The ``extra`` fields of the engine's log records: which run, workflow, stage and delivery attempt a line is
about, so a JSON formatter (or any handler) can index them without parsing messages."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .deps import Deps
    from .records import RunRecord, StageRecord

logger = logging.getLogger("django_workflow_engine.worker")

FIELDS = ("run_id", "workflow_id", "stage_id", "attempt")


def log_extra(
    run_id: str | None, workflow_id: str | None = None, stage_id: str | None = None, attempt: int | None = None
) -> dict[str, Any]:
    """``logger.info(..., extra=log_extra(run.id, run.workflow_id, stage_id, job.attempt))``; every key is
    present (``None`` when unknown), so formatters can rely on them on the engine's records."""
    return {"run_id": run_id, "workflow_id": workflow_id, "stage_id": stage_id, "attempt": attempt}


def job_extra(job: Any) -> dict[str, Any]:
    """The fields of a job record (``attempt`` is its delivery count, 1 on the first execution)."""
    return log_extra(job.run_id, job.workflow_id, job.stage_id, job.attempt)


def stage_log_sink(deps: Deps, run: RunRecord, record: StageRecord) -> Callable[[str, str, dict[str, Any]], None]:
    """Where a stage's ``ctx.log(...)`` lines go: the observer (if any) and the run's log; a line that cannot be
    stored is reported, never raised into the stage."""
    observer = deps.options.observer

    def log_sink(level: str, message: str, meta: dict[str, Any]) -> None:
        if observer is not None:
            observer.stage_log(run.id, record.stage_id, level, message, meta)
        try:
            deps.persistence.create_log(run.id, record.id, level, message, meta or None, deps.clock.now())
        except Exception:
            logger.exception(
                "could not store a log line of stage %s",
                record.stage_id,
                extra=log_extra(run.id, run.workflow_id, record.stage_id),
            )

    return log_sink
