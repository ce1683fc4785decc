"""Workers: execute jobs with a lease heartbeat.

:class:`Worker` owns the loop and the signals; ``manage.py runworker`` only parses arguments. With
``TRANSPORT="rq"`` it runs an RQ worker on the engine's queue (JSON serializer); with ``"database"`` it
polls the job table. The first SIGTERM/SIGINT lets the current stage finish and then exits; a second one
aborts it (its lease then expires and the job is re-delivered).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections
from django.db.utils import InterfaceError, OperationalError

from ..adapters.sqlite import is_busy, use_wal
from ..kernel.execution import JobOutcome, run_job
from ..kernel.records import JobRecord

logger = logging.getLogger("django_workflow_engine.worker")

_WORKER_ID: str | None = None
_STOPPING = threading.Event()
TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def current_worker_id() -> str:
    return _WORKER_ID or default_worker_id()


class LeaseKeeper:
    """Refreshes the leases of the jobs this process executes, every ``interval`` seconds, on one thread of
    its own (with its own DB connection) that lives as long as the process: holding a job costs no thread
    start per stage.

    Use :meth:`hold` around a job's execution. A job whose lease is found gone is logged and dropped."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[Any, JobRecord, str]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._interval = 60.0
        self._wake = threading.Event()

    @contextmanager
    def hold(self, kernel: Any, job: JobRecord, worker_id: str, interval: float) -> Iterator[None]:
        with self._lock:
            self._held[job.id] = (kernel, job, worker_id)
            if self._thread is None or not self._thread.is_alive():
                self._interval = interval
                self._wake.clear()
                self._thread = threading.Thread(target=self._run, name="dwe-lease-keeper", daemon=True)
                self._thread.start()
            elif interval < self._interval:
                self._interval = interval
                self._wake.set()  # a shorter interval than the thread is sleeping for
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(job.id, None)

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(self._interval)
                self._wake.clear()
                with self._lock:
                    held = list(self._held.values())
                for kernel, job, worker_id in held:
                    self._touch(kernel, job, worker_id)
        finally:
            connections.close_all()

    def _touch(self, kernel: Any, job: JobRecord, worker_id: str) -> None:
        try:
            if not kernel.jobs.touch(job.id, worker_id, kernel.clock.now()):
                logger.warning("lost the lease of job %s (stage %s)", job.id, job.stage_id)
                with self._lock:
                    self._held.pop(job.id, None)
        except Exception:
            logger.warning("heartbeat of job %s failed", job.id, exc_info=True)
            connections.close_all()  # a broken connection is replaced at the next beat


LEASES = LeaseKeeper()


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
    kernel: Any, job: JobRecord, worker_id: str, *, eager: bool | None = None, until: float | None = None
) -> JobOutcome:
    """Execute a claimed job with a lease, then, with ``eager`` (default: ``EAGER_EXECUTION``), the stages its
    run's transitions start for this worker, one after another (each leased while it runs), until a
    transition starts none, the worker is asked to stop, or ``time.monotonic()`` passes ``until``. Returns
    the first job's outcome."""
    from ..conf import settings

    eager = bool(settings.EAGER_EXECUTION) if eager is None else eager

    def may_continue() -> bool:
        return not _STOPPING.is_set() and (until is None or time.monotonic() < until)

    first: JobOutcome | None = None
    started = None
    while True:
        try:
            with LEASES.hold(kernel, job, worker_id, settings.HEARTBEAT_SECONDS):
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


def execute_job_by_id(job_id: str) -> JobOutcome | None:
    """Claim and execute one job by id (the RQ path); its outcome, or ``None`` if it was not claimable.

    With ``EAGER_EXECUTION``, the worker then keeps going without the queue while the database has due jobs:
    it claims the next one (highest priority, oldest first) and withdraws its message, until nothing is due,
    a stop is requested, or half of the message's RQ timeout has passed (RQ interrupts a message that runs
    past its timeout; the other half is left for the stage running at that moment)."""
    from ..adapters.rq import flush_withdrawals, ring, withdraw_later
    from ..conf import settings
    from ..engine import engine

    drop_broken_connections()
    kernel = engine.kernel
    worker_id = current_worker_id()
    # The messages of jobs taken without them (siblings, and jobs taken from the database below) are withdrawn
    # a few at a time (``withdraw_later``), and the rest when this message ends: most were never rung (quiet
    # doorbell), and a message left in the queue a little longer only costs the worker that pops it a claim
    # that finds the job taken.
    try:
        job = kernel.jobs.claim(job_id, worker_id, kernel.clock.now())
        until = _message_deadline()
        # A message whose job is taken (a duplicate, or one withdrawn too late) still woke this worker: it
        # looks in the database for due work like any other.
        outcome = execute_claimed(kernel, job, worker_id, until=until) if job is not None else None
        if not settings.EAGER_EXECUTION:
            return outcome
        while not _STOPPING.is_set() and (until is None or time.monotonic() < until):
            drop_broken_connections()
            job = kernel.jobs.dequeue(worker_id, kernel.clock.now())
            if job is None:
                return outcome
            withdraw_later([job.id])
            execute_claimed(kernel, job, worker_id, until=until)
        # Leaving with work possibly due: while the queue held messages, new jobs were not rung (see ``ring``),
        # so make sure one message announces the next due job to whichever worker is free.
        now = kernel.clock.now()
        ring([j.id for j in kernel.jobs.due_pending(now, now, 1)])
        return outcome
    finally:
        flush_withdrawals()


def _message_deadline() -> float | None:
    """``time.monotonic()`` at half of the current RQ message's timeout; ``None`` outside RQ or without one."""
    from rq import get_current_job
    from rq.queue import Queue

    message = get_current_job()
    if message is None:
        return None
    timeout = message.timeout or Queue.DEFAULT_TIMEOUT
    if timeout is None or timeout < 0:
        return None
    return time.monotonic() + timeout / 2


class Worker:
    """Executes jobs until stopped (or, with ``burst``, until the queue is empty).

    Args:
        queues: RQ queue names (default: ``WORKFLOW_ENGINE["RQ_QUEUE"]``); ignored by the database transport.
        burst: exit when there is nothing left to do.
        worker_id: lease holder id (default ``host:pid``).
        with_maintenance: also run the maintenance loop in this process (on a thread).
        transport: ``"rq"`` or ``"database"`` (default: the setting).
        fork: RQ only: fork a work horse per job (default: execute in the worker process, which keeps the
            preloaded registry and AI libraries warm and saves the fork).
    """

    def __init__(
        self,
        *,
        queues: list[str] | None = None,
        burst: bool = False,
        worker_id: str | None = None,
        with_maintenance: bool = False,
        transport: str | None = None,
        fork: bool = False,
    ):
        from ..conf import settings

        self.queues = queues or [settings.RQ_QUEUE]
        self.burst = burst
        self.worker_id = worker_id or default_worker_id()
        self.with_maintenance = with_maintenance
        self.transport = transport or settings.TRANSPORT
        self.fork = fork
        self.jobs_processed = 0
        self._stopping = threading.Event()
        self._signals = 0
        self._maintenance: Any = None

    # -- lifecycle -----------------------------------------------------------------------------------------

    def preload(self) -> None:
        """Import everything heavy once, before any fork: the registry and, when some registered stage uses
        ``ctx.ai()`` (or a work horse is forked per job), litellm. A worker with no AI stage stays small
        (litellm alone adds ~130 MB); a stage that reaches the AI helper some other way imports it on first
        use, once per worker process."""
        from ..registry import registry

        workflows = registry.all()
        if not (self.fork or any(stage_uses_ai(stage) for workflow in workflows for stage in workflow.stages())):
            return
        try:
            from ..ai import preload as ai_preload
        except ImportError:
            return
        ai_preload()

    def run(self) -> int:
        global _WORKER_ID
        _WORKER_ID = self.worker_id
        _STOPPING.clear()
        self.preload()
        use_wal()  # several processes share a SQLite file from now on
        connections.close_all()  # nothing inherited by forks or threads
        if self.with_maintenance:
            from .maintenance import MaintenanceLoop

            self._maintenance = MaintenanceLoop(worker_id=f"{self.worker_id}:maintenance")
            self._maintenance.start_thread()
        logger.info(
            "worker %s starting (%s transport%s)", self.worker_id, self.transport, ", burst" if self.burst else ""
        )
        try:
            if self.transport == "rq":
                self._run_rq()
            else:
                self._install_signals()
                self._run_database()
        finally:
            if self._maintenance is not None:
                self._maintenance.stop()
            connections.close_all()
        logger.info("worker %s stopped after %d job(s)", self.worker_id, self.jobs_processed)
        return 0

    def stop(self) -> None:
        self._stopping.set()
        _STOPPING.set()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def on_signal(signum: int, frame: Any) -> None:
            self._signals += 1
            if self._signals == 1:
                _STOPPING.set()
                logger.info(
                    "worker %s: finishing the current stage, then exiting (signal again to abort)", self.worker_id
                )
                self._stopping.set()
            else:
                logger.warning("worker %s: aborting the current stage; its lease will expire", self.worker_id)
                raise SystemExit(1)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    # -- database transport --------------------------------------------------------------------------------

    def _run_database(self) -> None:
        from ..conf import settings
        from ..engine import engine

        backoff = 0.5
        while not self._stopping.is_set():
            try:
                drop_broken_connections()
                kernel = engine.kernel
                job = kernel.jobs.dequeue(self.worker_id, kernel.clock.now())
                if job is None:
                    if self.burst and not self._maintenance_pending(kernel):
                        # The maintenance thread may have claimed a run between our dequeue and our claim:
                        # look once more before calling the queue drained.
                        job = kernel.jobs.dequeue(self.worker_id, kernel.clock.now())
                        if job is None and not self._runs_in_flight():
                            return
                    if job is None:
                        self._stopping.wait(settings.WORKER_POLL_SECONDS)
                        continue
                execute_claimed(kernel, job, self.worker_id)
                self.jobs_processed += 1
                backoff = 0.5
            except TRANSIENT_DB_ERRORS as exc:
                logger.warning("database unavailable; retrying in %.1f s", backoff, exc_info=not is_busy(exc))
                connections.close_all()
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 10)

    def _runs_in_flight(self) -> bool:
        """In burst mode with maintenance: work may still appear while a run waits to be claimed (another
        claimer may hold it, uncommitted) or a job is queued or running."""
        if not self.with_maintenance:
            return False
        from ..models import WorkflowJob, WorkflowRun

        return (
            WorkflowRun.objects.filter(status="PENDING").exists()
            or WorkflowJob.objects.filter(status__in=["PENDING", "RUNNING"]).exists()
        )

    def _maintenance_pending(self, kernel: Any) -> bool:
        """In burst mode with maintenance: keep going while claims are possible."""
        if not self.with_maintenance:
            return False
        from ..kernel import ClaimPendingRuns

        return bool(kernel.dispatch(ClaimPendingRuns(worker_id=self.worker_id, max_claims=10)).claimed)

    # -- RQ transport --------------------------------------------------------------------------------------

    def _run_rq(self) -> None:
        import django_rq
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
        from rq import SimpleWorker
        from rq import Worker as ForkingWorker
        from rq.serializers import JSONSerializer

        queues = [django_rq.get_queue(name, serializer=JSONSerializer) for name in self.queues]
        worker_class = _rq_worker_class(ForkingWorker if self.fork else SimpleWorker)
        while self._wait_for_redis(queues[0].connection):
            rq_worker = worker_class(
                queues,
                connection=queues[0].connection,
                serializer=JSONSerializer,
                name=f"{self.worker_id}:{time.monotonic_ns() % 10**6}",
            )
            try:
                rq_worker.work(burst=self.burst, with_scheduler=True, logging_level="WARNING")
            except (RedisConnectionError, RedisTimeoutError) as exc:
                # Lost between the ping and RQ's own start-up (RQ rides out losses once it is working).
                logger.warning("worker %s: lost Redis (%s); waiting for it", self.worker_id, exc)
                continue
            finally:
                self.jobs_processed += rq_worker.successful_job_count + rq_worker.failed_job_count
            return

    def _wait_for_redis(self, connection: Any) -> bool:
        """Block until Redis answers a PING, retrying with backoff (1 s doubling to 30 s) and a log line per
        attempt, so a worker started before Redis (or while it restarts) waits instead of crash-looping under
        a service manager. Returns False when a stop was requested while waiting."""
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        delay = 1.0
        waited = False
        while not self._stopping.is_set():
            try:
                connection.ping()
            except (RedisConnectionError, RedisTimeoutError) as exc:
                if not waited:
                    self._install_signals()  # RQ installs its own once it starts; until then a stop ends the wait
                waited = True
                logger.warning(
                    "worker %s: Redis at %s is unreachable (%s); retrying in %.0f s",
                    self.worker_id,
                    _redis_address(connection),
                    exc,
                    delay,
                )
                self._stopping.wait(delay)
                delay = min(delay * 2, 30.0)
                continue
            if waited:
                logger.info("worker %s: Redis at %s is reachable; starting", self.worker_id, _redis_address(connection))
            return True
        return False


def _redis_address(connection: Any) -> str:
    kwargs = getattr(getattr(connection, "connection_pool", None), "connection_kwargs", {}) or {}
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


def stage_uses_ai(stage: Any) -> bool:
    """Whether a stage's own functions call ``ctx.ai()`` (they name the attribute ``ai``)."""
    for fn in (stage.execute, getattr(stage, "check_completion", None)):
        code = getattr(getattr(fn, "__wrapped__", fn), "__code__", None)
        if code is not None and "ai" in code.co_names:
            return True
    return False


def _rq_worker_class(base: type) -> type:
    """``base`` (an RQ worker class) that also tells the engine when a warm shutdown is requested, so a
    chain of eager continuations ends after the current stage."""

    class EngineRQWorker(base):  # type: ignore[misc, valid-type]
        def request_stop(self, signum: Any, frame: Any) -> None:
            _STOPPING.set()
            super().request_stop(signum, frame)

        # RQ builds its scheduler inside ``work()``; the engine's scheduler subclass is swapped in as it is
        # stored, before its process is forked.
        @property
        def scheduler(self) -> Any:
            return self.__dict__.get("_engine_scheduler")

        @scheduler.setter
        def scheduler(self, value: Any) -> None:
            if value is not None and not isinstance(value, _orphan_aware_scheduler()):
                value.__class__ = _orphan_aware_scheduler()
            self.__dict__["_engine_scheduler"] = value

    EngineRQWorker.__name__ = base.__name__
    return EngineRQWorker


@functools.cache
def _orphan_aware_scheduler() -> type:
    """RQ's scheduler, which also stops when its worker is gone.

    RQ forks the scheduler as a child of the worker process and stops it when the worker shuts down; a worker
    killed outright (SIGKILL, the OOM killer) never does, and the orphaned scheduler would loop, holding its
    lock, for as long as the machine runs. This one notices at its next heartbeat (every second) that its
    parent changed and stops the way a requested stop does (locks released, death registered)."""
    from rq.scheduler import RQScheduler

    class OrphanAwareScheduler(RQScheduler):  # type: ignore[misc]
        def start(self) -> Any:
            self._engine_parent = os.getpid()
            return super().start()

        def heartbeat(self) -> None:
            parent = getattr(self, "_engine_parent", None)
            if parent is not None and os.getppid() != parent and not self._stop_requested:
                logger.warning("RQ scheduler %s: its worker (pid %d) is gone; stopping", os.getpid(), parent)
                self.request_stop()
            super().heartbeat()

    return OrphanAwareScheduler
