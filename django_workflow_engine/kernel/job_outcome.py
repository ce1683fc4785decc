"""What executing a job came to: the stage's :class:`Executed` result and the job's :class:`JobOutcome`, and the
last step of every job (:func:`finish`: a failed job retried or failed for good, the outcome logged), shared by
:mod:`.execution` (one job) and :mod:`.lockstep` (several)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from .commands import ExecuteResult
from .failures import settle_failure
from .logcontext import job_extra
from .outcome import fail_stage_and_run
from .records import JobRecord, StartedStage

if TYPE_CHECKING:
    from .kernel import Kernel

logger = logging.getLogger("django_workflow_engine.worker")

StageOutcome = Literal["completed", "suspended", "failed", "deferred"]
# ``released``: a host gave the job back after an infrastructure error (a busy SQLite database).
# ``deferred``: due again later as the same attempt, no retry used: the stage asked for it (an AI rate limit), or
# its stage's cluster-wide limit was reached.
JobOutcomeKind = Literal["completed", "suspended", "retrying", "failed", "released", "deferred"]
TransitionAction = Literal["advanced", "completed", "failed", "noop"]


@dataclass(frozen=True)
class JobOutcome:
    """What happened to one job."""

    job_id: str
    run_id: str
    stage_id: str
    attempt: int
    outcome: JobOutcomeKind
    duration_ms: int
    error: str | None = None
    ghost: bool = False
    transition: TransitionAction | None = None
    # The next stage of the run, already started for this worker (eager continuation): run it next with
    # ``run_job(kernel, continuation.job, started=continuation)``, or give it back with ``jobs.release``.
    continuation: StartedStage | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Executed:
    """What executing one stage did. ``transition`` and ``continuation`` are set when a job was settled in the
    outcome transaction."""

    outcome: StageOutcome
    output: Any = None
    error: str | None = None
    next_poll_at: datetime | None = None
    ghost: bool = False
    retryable: bool = True
    transition: TransitionAction | None = None
    continuation: StartedStage | None = None

    def result(self) -> ExecuteResult:
        """The ``job.execute`` command's result (``next_poll_at`` as ISO text: results are cached as JSON)."""
        poll = self.next_poll_at.isoformat() if self.next_poll_at else None
        return ExecuteResult(self.outcome, self.output, self.error, poll, self.ghost, self.retryable)


def finish(
    kernel: Kernel,
    job: JobRecord,
    executed: Executed,
    began: datetime,
    on_error: Callable[[BaseException], None] | None = None,
    duration_ms: int | None = None,
) -> JobOutcome:
    """After a job's stage was executed: a failed job is retried or failed for good; the outcome is logged.
    ``duration_ms``: the job's own time when it shared its transactions with others (else since ``began``)."""
    deps = kernel.deps
    now = deps.clock.now()
    outcome: JobOutcomeKind = executed.outcome
    transition = executed.transition
    if executed.outcome == "failed":
        outcome, transition = settle_failure(
            kernel, job, executed.error, executed.ghost, executed.retryable, now, on_error
        )
    if duration_ms is None:
        duration_ms = int((now - began).total_seconds() * 1000)
    log = logger.warning if outcome in ("failed", "retrying") else logger.info
    log(
        "stage %s of run %s %s (attempt %d, %d ms)%s",
        job.stage_id,
        job.run_id,
        outcome if not executed.ghost else "discarded (ghost)",
        job.attempt,
        duration_ms,
        f": {executed.error}" if executed.error else "",
        extra=job_extra(job),
    )
    return JobOutcome(
        job.id,
        job.run_id,
        job.stage_id,
        job.attempt,
        outcome,
        duration_ms,
        executed.error,
        executed.ghost,
        transition,
        executed.continuation,
    )


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
