"""Workers: execute jobs with a lease heartbeat.

:class:`Worker` owns the loop and the signals; ``manage.py runworker`` only parses arguments. With
``TRANSPORT="rq"`` it runs an RQ worker on the engine's queue (JSON serializer); with ``"database"`` it
looks at the job table, and when it finds nothing waits ``WORKER_POLL_SECONDS`` (on PostgreSQL, only until a
job becomes due: :mod:`..adapters.notify`). The first SIGTERM/SIGINT lets the current stage finish and then
exits; a second one aborts it (its lease then expires and the job is re-delivered).
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING, Any

from django.db import connections
from django.db.utils import InterfaceError, OperationalError

from ..adapters.notify import Listener
from ..adapters.sqlite import is_busy, use_wal
from .jobs import STOPPING, Batcher, default_worker_id, drop_broken_connections, execute_batch, set_worker_id
from .wiring import default_kernel

if TYPE_CHECKING:
    from ..kernel import Kernel

logger = logging.getLogger("django_workflow_engine.worker")

TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)


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
        kernel: the kernel to run on (default: the package engine's). The RQ transport's work horses run on
            the package engine's kernel: RQ calls its job function with a job id only.
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
        kernel: Kernel | None = None,
    ):
        from ..conf import settings

        self.queues = queues or [settings.RQ_QUEUE]
        self.burst = burst
        self.worker_id = worker_id or default_worker_id()
        self.with_maintenance = with_maintenance
        self.transport = transport or settings.TRANSPORT
        self.fork = fork
        self.kernel = kernel
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
        set_worker_id(self.worker_id)
        STOPPING.clear()
        self.preload()
        use_wal()  # several processes share a SQLite file from now on
        connections.close_all()  # nothing inherited by forks or threads
        if self.with_maintenance:
            from .maintenance import MaintenanceLoop

            self._maintenance = MaintenanceLoop(worker_id=f"{self.worker_id}:maintenance", kernel=self.kernel)
            self._maintenance.start_thread()
        from ..conf import settings
        from .leases import LEASES
        from .registry import Registration

        registration = Registration(self.worker_id, list(self.queues), self.transport)
        LEASES.register(registration, float(settings.HEARTBEAT_SECONDS))
        logger.info(
            "worker %s starting (%s transport%s)", self.worker_id, self.transport, ", burst" if self.burst else ""
        )
        try:
            if self.transport == "rq":
                from .rq_worker import RQWorkerSettings, run_rq

                options = RQWorkerSettings(
                    self.queues, self.worker_id, self.burst, self.fork, self._stopping, self._install_signals
                )
                self.jobs_processed += run_rq(options)
            else:
                self._install_signals()
                self._run_database()
        finally:
            if self._maintenance is not None:
                self._maintenance.stop()
            LEASES.unregister()
            connections.close_all()
        logger.info("worker %s stopped after %d job(s)", self.worker_id, self.jobs_processed)
        return 0

    def stop(self) -> None:
        self._stopping.set()
        STOPPING.set()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def on_signal(signum: int, frame: Any) -> None:
            self._signals += 1
            if self._signals == 1:
                STOPPING.set()
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

        backoff = 0.5
        batcher: Batcher | None = None
        listener: Listener | None = None
        while not self._stopping.is_set():
            try:
                drop_broken_connections()
                kernel = default_kernel(self.kernel)
                batcher = batcher or Batcher(kernel)
                if getattr(kernel.jobs, "notify_due", False):
                    listener = listener or Listener(getattr(kernel.jobs, "using", "default"))
                    listener.listen()  # before the look: a job due from now on wakes the wait below
                    listener.discard()
                else:
                    listener = None
                jobs = batcher.dequeue(kernel, self.worker_id)
                job = jobs[0] if jobs else None
                if job is None:
                    if self.burst and not self._maintenance_pending(kernel):
                        # The maintenance thread may have claimed a run between our dequeue and our claim:
                        # look once more before calling the queue drained.
                        job = kernel.jobs.dequeue(self.worker_id, kernel.clock.now())
                        if job is None and not self._runs_in_flight():
                            return
                    if job is None:
                        if listener is not None:
                            listener.wait(settings.WORKER_POLL_SECONDS, self._stopping)
                        else:
                            self._stopping.wait(settings.WORKER_POLL_SECONDS)
                        continue
                    jobs = [job]
                batcher.observe(execute_batch(kernel, jobs, self.worker_id))
                self.jobs_processed += len(jobs)
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


def stage_uses_ai(stage: Any) -> bool:
    """Whether a stage's own functions call ``ctx.ai()`` (they name the attribute ``ai``)."""
    for fn in (stage.execute, getattr(stage, "check_completion", None)):
        code = getattr(getattr(fn, "__wrapped__", fn), "__code__", None)
        if code is not None and "ai" in code.co_names:
            return True
    return False
