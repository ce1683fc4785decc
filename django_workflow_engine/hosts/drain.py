"""Driving runs in the calling process, with no worker: drain due jobs, poll due suspended stages (and advance
the runs they resume) until nothing is runnable. ``engine.run_until_idle()``, the in-memory test harness and the
maintenance tick all go through here. Imports no Django: the harness runs it on the in-memory adapters."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from ..kernel import ClaimPendingRuns, FlushOutbox, Kernel, PollSuspended, TransitionRun
from ..kernel.commands import PollResult
from ..kernel.execution import JobOutcome, run_job
from ..kernel.records import JobRecord

logger = logging.getLogger("django_workflow_engine.worker")


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
    release_on: Callable[[BaseException], bool] | None = None,
) -> DrainResult:
    """Claim pending runs and execute due jobs in this process until nothing is runnable.

    Suspended stages that are not due and retries whose backoff has not elapsed are left waiting. With
    ``eager``, a stage that starts its run's next group is followed at once by that group's first stage
    (as workers do); without it, jobs run strictly in queue order. An exception for which ``release_on``
    returns True (a busy database) gives the job being executed back (PENDING, due now, its attempt not
    counted) before it propagates, so it is retried at once rather than when its lease expires.
    """
    totals = DrainResult()
    counters = {"completed": "completed", "failed": "failed", "retrying": "retried", "suspended": "suspended"}

    def count(outcome: JobOutcome) -> None:
        totals.jobs += 1
        if outcome.outcome in counters:
            name = counters[outcome.outcome]
            setattr(totals, name, getattr(totals, name) + 1)
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
        outcome = _run_or_release(kernel, job, worker_id, release_on, continue_as=continue_as)
        count(outcome)
        while outcome.continuation is not None:
            started = outcome.continuation
            if max_jobs is not None and totals.jobs >= max_jobs:
                kernel.deps.jobs.release(started.job.id, worker_id, kernel.deps.clock.now())
                break
            outcome = _run_or_release(
                kernel, started.job, worker_id, release_on, continue_as=continue_as, started=started
            )
            count(outcome)
    return totals


def _run_or_release(
    kernel: Kernel, job: JobRecord, worker_id: str, release_on: Callable[[BaseException], bool] | None, **options: Any
) -> JobOutcome:
    try:
        return run_job(kernel, job, **options)
    except Exception as exc:
        if release_on is not None and release_on(exc):
            try:
                kernel.deps.jobs.release(job.id, worker_id, kernel.deps.clock.now())
            except Exception:
                logger.exception("could not release job %s; it is retried when its lease expires", job.id)
        raise


def poll_suspended(kernel: Kernel, max_checks: int = 50) -> PollResult:
    """Check up to ``max_checks`` due suspended stages, and transition each run one of them resumed."""
    polled: PollResult = kernel.dispatch(PollSuspended(max_checks=max_checks))
    for run_id in polled.resumed_run_ids:
        kernel.dispatch(TransitionRun(run_id=run_id))
    return polled


def run_until_idle(
    kernel: Kernel,
    *,
    max_jobs: int | None = None,
    on_job: Callable[[JobOutcome], Any] | None = None,
    worker_id: str = "in-process",
    flush_max_events: int | None = 1000,
    max_polls: int = 100,
    release_on: Callable[[BaseException], bool] | None = None,
) -> DrainResult:
    """Claim pending runs, execute due jobs, poll due suspended stages and flush events (up to
    ``flush_max_events`` a round; ``None``: no flush) until nothing is runnable at the clock's current time.

    Stages not yet due, and retries in backoff, are left waiting. Returns the totals over every round.
    ``release_on`` is passed to :func:`drain` (a busy database gives the
    job back at once).
    """
    total = DrainResult()
    while True:
        result = drain(
            kernel,
            worker_id=worker_id,
            max_jobs=None if max_jobs is None else max_jobs - total.jobs,
            on_job=on_job,
            release_on=release_on,
        )
        for counter in fields(DrainResult):
            setattr(total, counter.name, getattr(total, counter.name) + getattr(result, counter.name))
        polled = poll_suspended(kernel, max_polls)
        if flush_max_events is not None:
            kernel.dispatch(FlushOutbox(max_events=flush_max_events))
        if not polled.resumed_run_ids and not polled.failed and result.jobs == 0:
            return total
        if max_jobs is not None and total.jobs >= max_jobs:
            return total
