"""Executing claimed jobs in a worker process: each under a lease, followed by the stages its run's transitions
start for this worker (eager continuation), and given back at once when the database was busy. Shared by the
database worker, the RQ job function and the serverless entry points."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from contextlib import ExitStack
from typing import Any

from django.db import connections
from django.db.utils import OperationalError

from ..adapters.sqlite import is_busy
from ..adapters.statements import dialect
from ..kernel.execution import JobOutcome, run_job
from ..kernel.lockstep import run_jobs
from ..kernel.records import JobRecord, StartedStage
from .leases import LEASES

logger = logging.getLogger("django_workflow_engine.worker")

_WORKER_ID: str | None = None
# Set when this process is asked to stop: a chain of eager continuations ends after the current stage.
STOPPING = threading.Event()


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def current_worker_id() -> str:
    return _WORKER_ID or default_worker_id()


def set_worker_id(worker_id: str | None) -> None:
    """The lease holder id of the jobs this process executes (``Worker.run`` sets it)."""
    global _WORKER_ID
    _WORKER_ID = worker_id


def drop_broken_connections() -> None:
    """Between jobs: close only connections that saw an error (and no longer answer).

    Unlike ``close_old_connections`` this ignores ``CONN_MAX_AGE``: a worker keeps its connection across
    jobs (reconnecting for every stage costs more than the stage itself), and a connection broken by a
    database restart is replaced before the next job.
    """
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and conn.errors_occurred and not conn.is_usable():
            conn.close()
        elif conn.connection is not None:
            conn.errors_occurred = False


def execute_claimed(
    kernel: Any,
    job: JobRecord,
    worker_id: str,
    *,
    eager: bool | None = None,
    until: float | None = None,
    started: StartedStage | None = None,
) -> JobOutcome:
    """Execute a claimed job with a lease, then, with ``eager`` (default: ``CONTINUE_IN_WORKER``), the stages its
    run's transitions start for this worker, one after another (each leased while it runs), until a
    transition starts none, the worker is asked to stop, or ``time.monotonic()`` passes ``until``. Returns
    the first job's outcome. ``started``: ``job`` is an eager continuation, already begun."""
    from ..conf import settings

    eager = bool(settings.CONTINUE_IN_WORKER) if eager is None else eager

    def may_continue() -> bool:
        return not STOPPING.is_set() and (until is None or time.monotonic() < until)

    first: JobOutcome | None = None
    while True:
        try:
            stop_at = lease_stop(kernel, job, settings.HEARTBEAT_SECONDS)
            with LEASES.hold(kernel, job, worker_id, settings.HEARTBEAT_SECONDS, stop_at):
                outcome = run_job(
                    kernel,
                    job,
                    continue_as=worker_id if eager else None,
                    continue_if=may_continue,
                    started=started,
                )
        except OperationalError as exc:
            if not is_busy(exc):
                raise
            released = release_busy(kernel, job, worker_id, exc)
            return first or released
        first = first or outcome
        # A continuation was started before any stop request reached this process: it runs, like the
        # current stage would; the stop request then ends the chain at its transition.
        started = outcome.continuation
        if started is None:
            return first
        job = started.job


def lease_stop(kernel: Any, job: JobRecord, heartbeat: float) -> float | None:
    """``time.monotonic()`` after which the job's lease is no longer renewed: its stage's timeout, plus a
    heartbeat of grace (``None``: no timeout)."""
    workflow = kernel.deps.registry.get(job.workflow_id)
    if workflow is None or not workflow.has_stage(job.stage_id):
        return None
    timeout = workflow.stage(job.stage_id).timeout
    if timeout is None:
        timeout = kernel.deps.options.stage_timeout_seconds
    return None if timeout is None else time.monotonic() + timeout + heartbeat


def release_busy(kernel: Any, job: JobRecord, worker_id: str, exc: BaseException) -> JobOutcome:
    """Give back a claimed job whose execution met a busy SQLite database (after :mod:`..adapters.sqlite` waited
    it out, e.g. at a commit): PENDING and due at once, its attempt not counted (the stage did not fail; the
    database was busy), so another try starts now instead of at lease expiry. The transaction that failed
    rolled back: if the stage code had run, it runs again, as after a lost lease."""
    logger.warning(
        "database busy (%s): job %s (stage %s of run %s) released for another try",
        exc,
        job.id,
        job.stage_id,
        job.run_id,
    )
    try:
        kernel.jobs.release(job.id, worker_id, kernel.clock.now())
    except Exception:
        logger.exception("could not release job %s; it is retried when its lease expires", job.id)
    return JobOutcome(job.id, job.run_id, job.stage_id, job.attempt, "released", 0, str(exc))


# Stages slower than this (ms, as their jobs' outcomes report) are executed one job at a time: a batch runs its
# stages one after another, so a slow one would hold the others' jobs back from idle workers.
BATCH_STAGE_MS = 20


class Batcher:
    """How many due jobs a worker takes at once (``WORKFLOW_ENGINE["WORKER_BATCH"]``): one while its stages are
    slow or the setting is 1, else up to the setting (:func:`execute_batch`)."""

    def __init__(self, kernel: Any):
        from ..conf import settings

        configured = settings.WORKER_BATCH
        if configured is None:  # where writes leave together (PostgreSQL), a shared transaction saves the most
            using = getattr(kernel.deps.persistence, "using", None)
            configured = 8 if using is not None and dialect(connections[using]).deferred_writes else 1
        self.limit = max(1, int(configured))
        self.size = 1

    def observe(self, outcomes: list[JobOutcome]) -> None:
        slow = any(outcome.duration_ms > BATCH_STAGE_MS for outcome in outcomes)
        self.size = 1 if slow or not outcomes else min(self.limit, self.size * 2)

    def dequeue(self, kernel: Any, worker_id: str) -> list[JobRecord]:
        return kernel.jobs.dequeue_many(worker_id, kernel.clock.now(), self.size)


def execute_batch(
    kernel: Any, jobs: list[JobRecord], worker_id: str, *, until: float | None = None
) -> list[JobOutcome]:
    """Execute claimed jobs of several runs in lockstep (:func:`~..kernel.lockstep.run_jobs`: two transactions a
    round for all of them), then the stages their transitions start for this worker, round after round, each job
    leased while its round runs. A job the lockstep path leaves alone is executed by :func:`execute_claimed`.
    Returns every job's outcome (the continuations' too), in the order they finished."""
    from ..conf import settings

    if len(jobs) == 1:
        return [execute_claimed(kernel, jobs[0], worker_id, until=until)]
    eager = bool(settings.CONTINUE_IN_WORKER)

    def may_continue() -> bool:
        return not STOPPING.is_set() and (until is None or time.monotonic() < until)

    outcomes: list[JobOutcome] = []
    round_: list[tuple[JobRecord, StartedStage | None]] = [(job, None) for job in jobs]
    while round_:
        with ExitStack() as leases:
            for job, _started in round_:
                stop_at = lease_stop(kernel, job, settings.HEARTBEAT_SECONDS)
                leases.enter_context(LEASES.hold(kernel, job, worker_id, settings.HEARTBEAT_SECONDS, stop_at))
            try:
                done = run_jobs(kernel, round_, continue_as=worker_id if eager else None, continue_if=may_continue)
            except OperationalError as exc:
                if not is_busy(exc):
                    raise
                return outcomes + [release_busy(kernel, job, worker_id, exc) for job, _started in round_]
        next_round: list[tuple[JobRecord, StartedStage | None]] = []
        for (job, started), outcome in zip(round_, done, strict=True):
            if outcome is None:
                outcomes.append(execute_claimed(kernel, job, worker_id, eager=eager, until=until, started=started))
                continue
            outcomes.append(outcome)
            if outcome.continuation is not None:
                next_round.append((outcome.continuation.job, outcome.continuation))
        round_ = next_round
    return outcomes
