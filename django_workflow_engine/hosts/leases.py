"""The lease keeper: one thread per process refreshes the leases of the jobs it executes and, in a registered
worker, beats the worker's row in the workers registry (see :mod:`.registry`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections

from ..kernel import live
from ..kernel.records import JobRecord
from .registry import Registration

logger = logging.getLogger("django_workflow_engine.worker")


class LeaseKeeper:
    """Refreshes the leases of the jobs this process executes, every ``interval`` seconds, on one thread of
    its own (with its own DB connection) that lives as long as the process: holding a job costs no thread
    start per stage.

    Use :meth:`hold` around a job's execution. A job whose lease is found gone is logged and dropped. A job
    held with ``stop_at`` (its stage's timeout, as ``time.monotonic()``) is no longer renewed after it: stage
    code that could not be interrupted keeps this worker, but its lease expires and another worker takes the
    retry. A worker process calls :meth:`register` at start: the thread then also beats while idle, one upsert
    of the worker's row per beat; :meth:`unregister` marks the row stopped."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[Any, JobRecord, str, float | None]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._interval = 60.0
        self._wake = threading.Event()
        self._registration: Registration | None = None
        self._beat_lock = threading.Lock()
        self._written: dict[str, int] = {}  # job id -> progress reports written (see _write_progress)

    def register(self, registration: Registration, interval: float) -> None:
        """Record the worker in the registry now and at every beat from now on (idle or not).

        A database that is down or restarting at start does not stop the worker: it can still take jobs once
        the database is back, and the next beat writes the row."""
        try:
            registration.save(None)
        except Exception:
            logger.warning("could not record worker %s in the registry yet", registration.worker_id, exc_info=True)
            connections.close_all()
        with self._lock:
            self._registration = registration
            self._ensure_thread(interval)

    def unregister(self) -> None:
        """Mark the registered worker stopped (a clean exit); its beats end."""
        with self._beat_lock:
            registration, self._registration = self._registration, None
            if registration is not None:
                try:
                    registration.save(None, stopped=True)
                except Exception:
                    logger.warning("could not mark worker %s stopped", registration.worker_id, exc_info=True)

    @property
    def registration(self) -> Registration | None:
        return self._registration

    def _ensure_thread(self, interval: float) -> None:
        """With ``self._lock`` held: start the thread, or shorten its interval."""
        if self._thread is None or not self._thread.is_alive():
            self._interval = interval
            self._wake.clear()
            self._thread = threading.Thread(target=self._run, name="dwe-lease-keeper", daemon=True)
            self._thread.start()
        elif interval < self._interval:
            self._interval = interval
            self._wake.set()  # a shorter interval than the thread is sleeping for

    @contextmanager
    def hold(
        self, kernel: Any, job: JobRecord, worker_id: str, interval: float, stop_at: float | None = None
    ) -> Iterator[None]:
        with self._lock:
            self._held[job.id] = (kernel, job, worker_id, stop_at)
            self._ensure_thread(interval)
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(job.id, None)
                self._written.pop(job.id, None)
            registration = self._registration
            if registration is not None:
                registration.stage_done()

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(self._interval)
                self._wake.clear()
                with self._lock:
                    held = list(self._held.values())
                for kernel, job, worker_id, stop_at in held:
                    if stop_at is not None and time.monotonic() > stop_at:
                        logger.warning(
                            "stage %s of run %s is past its timeout and cannot be interrupted; its lease is no "
                            "longer renewed (job %s)",
                            job.stage_id,
                            job.run_id,
                            job.id,
                        )
                        with self._lock:
                            self._held.pop(job.id, None)
                        continue
                    self._touch(kernel, job, worker_id)
                self._beat(held[0][1] if held else None)
        finally:
            connections.close_all()

    def _write_progress(self, job: JobRecord) -> None:
        """The running stage's latest ``ctx.progress(...)``, when it changed since the last beat, into its row's
        ``metrics["live_progress"]`` (the stage's outcome replaces ``metrics`` when it finishes)."""
        latest = live.latest_progress(job.run_id, job.stage_id)
        if latest is None or self._written.get(job.id) == latest[0]:
            return
        from ..models import WorkflowStage

        n, event = latest
        WorkflowStage.objects.filter(
            run_id=job.run_id, stage_id=job.stage_id, status="RUNNING", superseded_at__isnull=True
        ).update(metrics={"live_progress": {k: v for k, v in event.items() if k != "stage_id"}})
        self._written[job.id] = n

    def _beat(self, job: JobRecord | None) -> None:
        with self._beat_lock:
            registration = self._registration
            if registration is None:
                return
            try:
                registration.save(job)
            except Exception:
                logger.warning("heartbeat of worker %s failed", registration.worker_id, exc_info=True)
                connections.close_all()

    def _touch(self, kernel: Any, job: JobRecord, worker_id: str) -> None:
        try:
            if not kernel.jobs.touch(job.id, worker_id, kernel.clock.now()):
                logger.warning("lost the lease of job %s (stage %s)", job.id, job.stage_id)
                with self._lock:
                    self._held.pop(job.id, None)
                return
            self._write_progress(job)
        except Exception:
            logger.warning("heartbeat of job %s failed", job.id, exc_info=True)
            connections.close_all()  # a broken connection is replaced at the next beat


LEASES = LeaseKeeper()
