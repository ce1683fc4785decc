"""Entry points for cron- or queue-triggered platforms: no long-running process needed.

* :func:`handle_job` executes the job named in a queue message (``{"job_id": ...}``).
* :func:`process_available_jobs` executes up to ``max_jobs`` due jobs from the job table.
* :func:`run_maintenance_tick` runs one maintenance pass (call it from a cron every few seconds/minutes).

Each call executes exactly the jobs it names or counts (no eager continuation, which could outlast the
platform's time limit): the next group's jobs wait in the queue for the next message or call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import close_old_connections

from ..kernel import Kernel
from .jobs import default_worker_id, execute_claimed
from .maintenance import MaintenanceResult
from .maintenance import run_maintenance_tick as _tick
from .wiring import default_kernel

__all__ = ["JobResult", "ProcessResult", "handle_job", "process_available_jobs", "run_maintenance_tick"]


@dataclass(frozen=True)
class JobResult:
    """``outcome``: completed, suspended, retrying, deferred (due later as the same attempt: an AI rate limit),
    failed, released (a busy SQLite database: the job was given back for another try), or skipped (the job was
    not claimable)."""

    outcome: str
    error: str | None = None


@dataclass(frozen=True)
class ProcessResult:
    processed: int = 0
    succeeded: int = 0
    failed: int = 0


def handle_job(
    message: Mapping[str, Any] | str, *, worker_id: str | None = None, kernel: Kernel | None = None
) -> JobResult:
    """Execute the job a queue message points at (``{"job_id": "..."}`` or the bare id)."""
    job_id = message if isinstance(message, str) else message.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        raise ValueError(f"handle_job needs a message with a 'job_id' string, got {message!r}.")
    close_old_connections()
    kernel = default_kernel(kernel)
    worker = worker_id or default_worker_id()
    job = kernel.jobs.claim(job_id, worker, kernel.clock.now())
    if job is None:
        return JobResult("skipped")
    outcome = execute_claimed(kernel, job, worker, eager=False)
    return JobResult(outcome.outcome, outcome.error)


def process_available_jobs(
    max_jobs: int = 1, *, worker_id: str | None = None, kernel: Kernel | None = None
) -> ProcessResult:
    """Dequeue and execute due jobs until none is left or ``max_jobs`` ran."""
    close_old_connections()
    kernel = default_kernel(kernel)
    worker = worker_id or default_worker_id()
    processed = succeeded = failed = 0
    while processed < max_jobs:
        job = kernel.jobs.dequeue(worker, kernel.clock.now())
        if job is None:
            break
        outcome = execute_claimed(kernel, job, worker, eager=False)
        processed += 1
        if outcome.outcome in ("completed", "suspended", "deferred"):
            succeeded += 1
        else:
            failed += 1
    return ProcessResult(processed, succeeded, failed)


def run_maintenance_tick(
    *, worker_id: str = "serverless-maintenance", kernel: Kernel | None = None
) -> MaintenanceResult:
    """One maintenance pass; returns what it did."""
    close_old_connections()
    return _tick(kernel, worker_id=worker_id)
