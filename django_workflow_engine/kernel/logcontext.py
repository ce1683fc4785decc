"""The ``extra`` fields of the engine's log records: which run, workflow, stage and delivery attempt a line is
about, so a JSON formatter (or any handler) can index them without parsing messages."""

from __future__ import annotations

from typing import Any

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
