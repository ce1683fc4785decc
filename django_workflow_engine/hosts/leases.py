"""The lease keeper: one thread per process refreshes the leases of the jobs it executes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections

from ..kernel.records import JobRecord

logger = logging.getLogger("django_workflow_engine.worker")


class LeaseKeeper:
    """Refreshes the leases of the jobs this process executes, every ``interval`` seconds, on one thread of
    its own (with its own DB connection) that lives as long as the process: holding a job costs no thread
    start per stage.

    Use :meth:`hold` around a job's execution. A job whose lease is found gone is logged and dropped. A job
    held with ``stop_at`` (its stage's timeout, as ``time.monotonic()``) is no longer renewed after it: stage
    code that could not be interrupted keeps this worker, but its lease expires and another worker takes the
    retry."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[Any, JobRecord, str, float | None]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._interval = 60.0
        self._wake = threading.Event()

    @contextmanager
    def hold(
        self, kernel: Any, job: JobRecord, worker_id: str, interval: float, stop_at: float | None = None
    ) -> Iterator[None]:
        with self._lock:
            self._held[job.id] = (kernel, job, worker_id, stop_at)
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
