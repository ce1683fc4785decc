"""A worker's entry in the workers registry (:class:`~django_workflow_engine.models.WorkflowWorker`).

The worker registers once at start; the lease keeper's thread then beats every ``HEARTBEAT_SECONDS``, idle or
busy, and each beat is one upsert of this row (the job in hand and the stages done so far are read from memory),
so executing a stage costs no statement for the registry. A clean exit marks the row stopped; a killed worker's
row simply stops beating and counts as gone after :func:`alive_grace_seconds`.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from ..kernel.records import JobRecord


def alive_grace_seconds() -> float:
    """How long after its last beat a worker still counts as alive: two beats and a half."""
    from ..conf import settings

    return 2.5 * float(settings.HEARTBEAT_SECONDS)


@dataclass
class Registration:
    """What a worker process reports of itself at each beat."""

    worker_id: str
    queues: list[str]
    transport: str
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_at: datetime = field(default_factory=timezone.now)
    stages_done: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def stage_done(self) -> None:
        with self._lock:
            self.stages_done += 1

    def save(self, job: JobRecord | None, *, stopped: bool = False) -> None:
        """Upsert the worker's row: one statement."""
        from ..models import WorkflowWorker

        now = timezone.now()
        row = WorkflowWorker(
            id=self.worker_id,
            host=self.host[:255],
            pid=self.pid,
            queues=list(self.queues),
            transport=self.transport,
            started_at=self.started_at,
            heartbeat_at=now,
            stopped_at=now if stopped else None,
            job_id=job.id if job else None,
            run_id=job.run_id if job else None,
            workflow_id=job.workflow_id if job else None,
            stage_id=job.stage_id if job else None,
            stages_done=self.stages_done,
        )
        WorkflowWorker.objects.bulk_create(
            [row],
            update_conflicts=True,
            unique_fields=["id"],
            update_fields=[
                "host",
                "pid",
                "queues",
                "transport",
                "started_at",
                "heartbeat_at",
                "stopped_at",
                "job_id",
                "run_id",
                "workflow_id",
                "stage_id",
                "stages_done",
            ],
        )
