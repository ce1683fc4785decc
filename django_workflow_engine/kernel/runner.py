"""Running jobs: the host-side logic shared by every host (in-process drain, RQ worker, serverless).

``run_job`` executes one claimed job, records the job outcome (complete, suspend, retry with backoff, or
fail) and dispatches ``run.transition`` at once so the next group starts without waiting for maintenance.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..core.errors import RunNotFound, StageNotFound, WorkflowNotFound
from .commands import ClaimPendingRuns, ExecuteJob, ExecuteResult, TransitionRun
from .events import STAGE_FAILED, WORKFLOW_FAILED, event
from .kernel import Deps, Kernel
from .logcontext import job_extra
from .records import JobRecord, StartedStage, Status

logger = logging.getLogger("django_workflow_engine.worker")


@dataclass(frozen=True)
class JobOutcome:
    """What happened to one job. ``outcome`` is ``completed``, ``suspended``, ``retrying`` or ``failed``."""

    job_id: str
    run_id: str
    stage_id: str
    attempt: int
    outcome: str
    duration_ms: int
    error: str | None = None
    ghost: bool = False
    transition: str | None = None
    # The next stage of the run, already started for this worker (eager continuation): run it next with
    # ``run_job(kernel, continuation.job, started=continuation)``, or give it back with ``jobs.release``.
    continuation: StartedStage | None = field(default=None, repr=False, compare=False)


def retry_delay(job: JobRecord, base_seconds: float) -> timedelta:
    """Exponential backoff: ``base * 2**(attempt-1)`` (2 s, 4 s, 8 s with the default base)."""
    return timedelta(seconds=base_seconds * (2 ** max(0, job.attempt - 1)))


def run_job(
    kernel: Kernel,
    job: JobRecord,
    *,
    on_error: Callable[[BaseException], None] | None = None,
    continue_as: str | None = None,
    continue_if: Callable[[], bool] | None = None,
    started: StartedStage | None = None,
) -> JobOutcome:
    """Execute a job already claimed (RUNNING, leased) and record its outcome.

    Infrastructure errors (database down, workflow removed) propagate; the job keeps its lease and is
    re-delivered when the lease expires.

    Args:
        continue_as: a worker id: when the stage completes and its run's next group starts, the group's
            first stage is started for this worker in the same transaction (``JobOutcome.continuation``).
        continue_if: asked at that moment; a continuation is started only if it returns True.
        started: execute this continuation (``job`` is ``started.job``) without its phase 1.
    """
    observer = kernel.deps.options.observer
    if observer is None:
        return _run_job(kernel, job, on_error, continue_as, continue_if, started)
    with observer.stage(job) as record:
        outcome = _run_job(kernel, job, on_error, continue_as, continue_if, started)
        record(outcome)
    return outcome


def _run_job(
    kernel: Kernel,
    job: JobRecord,
    on_error: Callable[[BaseException], None] | None,
    continue_as: str | None,
    continue_if: Callable[[], bool] | None,
    started: StartedStage | None,
) -> JobOutcome:
    deps = kernel.deps
    began = deps.clock.now()
    try:
        # No idempotency key: the claimed job row is the guard (each delivery is a new attempt, and a stage
        # that already COMPLETED is never executed again).
        result: ExecuteResult = kernel.dispatch(
            ExecuteJob(
                run_id=job.run_id,
                workflow_id=job.workflow_id,
                stage_id=job.stage_id,
                job_id=job.id,
                worker_id=continue_as,
                continue_if=continue_if,
                started=started,
            )
        )
    except (WorkflowNotFound, StageNotFound, RunNotFound) as exc:
        # A job that can never run (its workflow or stage was removed, its run deleted) is quarantined:
        # failed for good with the reason, so it cannot crash-loop through lease expiry and redelivery.
        return quarantine(kernel, job, f"Job quarantined: {exc}", began)
    now = deps.clock.now()
    duration_ms = int((now - began).total_seconds() * 1000)
    transition = None
    if result.outcome == "completed":
        if result.transition is None:  # not recorded in the outcome transaction (e.g. a duplicate delivery)
            deps.jobs.complete(job.id, now)
            transition = kernel.dispatch(TransitionRun(job.run_id)).action
        else:
            transition = result.transition
        outcome = "completed"
    elif result.outcome == "suspended" and result.transition is not None:
        outcome = "suspended"
    elif result.outcome == "suspended":
        next_poll_at = (
            datetime.fromisoformat(result.next_poll_at)
            if result.next_poll_at
            else now + timedelta(seconds=deps.options.suspend_fallback_seconds)
        )
        deps.jobs.suspend(job.id, next_poll_at, now)
        outcome = "suspended"
    else:
        can_retry = not result.ghost and result.retryable and job.attempt < job.max_attempts
        if can_retry:
            workflow = deps.registry.get(job.workflow_id)
            stage = workflow.stage(job.stage_id) if workflow and workflow.has_stage(job.stage_id) else None
            base = (
                stage.retry_base_seconds
                if stage and stage.retry_base_seconds is not None
                else deps.options.retry_base_seconds
            )
            deps.jobs.fail(job.id, result.error or "Unknown error", now + retry_delay(job, base), now)
            outcome = "retrying"
        else:
            deps.jobs.fail(job.id, result.error or "Unknown error", None, now)
            outcome = "failed"
            if not result.ghost:
                try:
                    transition = kernel.dispatch(TransitionRun(job.run_id)).action
                except Exception as exc:
                    logger.exception("transition after the failure of job %s failed", job.id, extra=job_extra(job))
                    if on_error:
                        on_error(exc)
    record = JobOutcome(
        job.id,
        job.run_id,
        job.stage_id,
        job.attempt,
        outcome,
        duration_ms,
        result.error,
        result.ghost,
        transition,
        result.continuation,
    )
    log = logger.warning if outcome in ("failed", "retrying") else logger.info
    log(
        "stage %s of run %s %s (attempt %d, %d ms)%s",
        job.stage_id,
        job.run_id,
        outcome if not result.ghost else "discarded (ghost)",
        job.attempt,
        duration_ms,
        f": {result.error}" if result.error else "",
        extra=job_extra(job),
    )
    return record


def quarantine(kernel: Kernel, job: JobRecord, message: str, started: datetime | None = None) -> JobOutcome:
    """Fail a job for good, and its stage and run with it (if they still exist and are not finished)."""
    deps = kernel.deps
    now = deps.clock.now()
    logger.error("%s (job %s, stage %s, run %s)", message, job.id, job.stage_id, job.run_id, extra=job_extra(job))
    with deps.persistence.atomic():
        deps.jobs.fail(job.id, message, None, now)
        fail_stage_and_run(deps, job.run_id, job.stage_id, message, now)
    duration = int((now - (started or now)).total_seconds() * 1000)
    return JobOutcome(job.id, job.run_id, job.stage_id, job.attempt, "failed", duration, message)


def fail_stage_and_run(deps: Deps, run_id: str, stage_id: str, message: str, now: datetime) -> None:
    """Inside a transaction: mark the stage FAILED and the run FAILED (if RUNNING), with events."""
    persistence = deps.persistence
    run = persistence.lock_run(run_id)
    if run is None or run.status != Status.RUNNING:
        return
    stage = persistence.get_stage(run_id, stage_id)
    events = []
    if stage is not None and stage.status in (Status.PENDING, Status.RUNNING):
        persistence.update_stage(
            stage.id, {"status": Status.FAILED, "completed_at": now, "error_message": message}, now
        )
        events.append(event(STAGE_FAILED, run_id, now, stage_id=stage_id, stage_name=stage.stage_name, error=message))
    persistence.update_run(
        run_id,
        {
            "status": Status.FAILED,
            "completed_at": now,
            "output": {"error": {"code": "STAGE_FAILED", "stage_id": stage_id, "message": message}},
        },
        now,
    )
    deps.jobs.cancel_by_run(run_id, now)
    events.append(event(WORKFLOW_FAILED, run_id, now, error=message, stage_id=stage_id))
    persistence.append_events(events, f"quarantine:{run_id}:{stage_id}")


@dataclass
class DrainResult:
    """Totals of :func:`drain`."""

    jobs: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    suspended: int = 0
    claimed_runs: int = 0


def drain(
    kernel: Kernel,
    *,
    worker_id: str = "in-process",
    max_jobs: int | None = None,
    on_job: Callable[[JobOutcome], Any] | None = None,
    eager: bool = False,
) -> DrainResult:
    """Claim pending runs and execute due jobs in this process until nothing is runnable.

    Suspended stages that are not due and retries whose backoff has not elapsed are left waiting. With
    ``eager``, a stage that starts its run's next group is followed at once by that group's first stage
    (as workers do); without it, jobs run strictly in queue order.
    """
    totals = DrainResult()

    def count(outcome: JobOutcome) -> None:
        totals.jobs += 1
        if outcome.outcome == "completed":
            totals.completed += 1
        elif outcome.outcome == "failed":
            totals.failed += 1
        elif outcome.outcome == "retrying":
            totals.retried += 1
        elif outcome.outcome == "suspended":
            totals.suspended += 1
        if on_job is not None:
            on_job(outcome)

    continue_as = worker_id if eager else None
    while max_jobs is None or totals.jobs < max_jobs:
        job = kernel.deps.jobs.dequeue(worker_id, kernel.deps.clock.now())
        if job is None:
            # Only when idle: claiming PENDING runs costs a transaction even when there is none.
            claimed = kernel.dispatch(ClaimPendingRuns(worker_id=worker_id, max_claims=100)).claimed
            totals.claimed_runs += len(claimed)
            if claimed:
                continue
            break
        outcome = run_job(kernel, job, continue_as=continue_as)
        count(outcome)
        while outcome.continuation is not None:
            started = outcome.continuation
            if max_jobs is not None and totals.jobs >= max_jobs:
                kernel.deps.jobs.release(started.job.id, worker_id, kernel.deps.clock.now())
                break
            outcome = run_job(kernel, started.job, continue_as=continue_as, started=started)
            count(outcome)
    return totals
