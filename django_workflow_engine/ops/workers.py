"""Worker health: who is alive, what each one runs, the queue's depth and the age of its oldest due job.

Read by ``manage.py workerstatus`` (container probes), the admin's Workers page and the metrics view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count, Min, Q
from django.utils import timezone

from ..hosts.registry import alive_grace_seconds
from ..models import Status, WorkflowJob, WorkflowWorker


@dataclass
class QueueState:
    """Jobs due now, scheduled later and running; how long the oldest due job has waited (seconds)."""

    due: int
    scheduled: int
    running: int
    oldest_due_seconds: float
    oldest_due_at: datetime | None


def queue_state(now: datetime | None = None, using: str = "default") -> QueueState:
    """One aggregate over the job table (the dequeue index's partial condition)."""
    now = now or timezone.now()
    jobs = WorkflowJob.objects.using(using)
    row = jobs.filter(status__in=(Status.PENDING, Status.RUNNING)).aggregate(
        due=Count("id", filter=Q(status=Status.PENDING, available_at__lte=now)),
        scheduled=Count("id", filter=Q(status=Status.PENDING, available_at__gt=now)),
        running=Count("id", filter=Q(status=Status.RUNNING)),
        oldest=Min("available_at", filter=Q(status=Status.PENDING, available_at__lte=now)),
    )
    oldest = row["oldest"]
    return QueueState(
        row["due"], row["scheduled"], row["running"], (now - oldest).total_seconds() if oldest else 0.0, oldest
    )


def live_workers(now: datetime | None = None, using: str = "default") -> list[WorkflowWorker]:
    return list(WorkflowWorker.objects.using(using).alive(now or timezone.now(), alive_grace_seconds()))


def serves(worker: WorkflowWorker, queue: str) -> bool:
    """A database-transport worker polls the job table, whatever its queue names; an RQ worker its queues."""
    return worker.transport == "database" or queue in (worker.queues or [])


@dataclass
class Health:
    """The verdict of :func:`check_health`: ``problems`` is empty when healthy."""

    workers: list[WorkflowWorker]
    queue: QueueState
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": self.problems,
            "live_workers": [
                {
                    "id": w.id,
                    "host": w.host,
                    "pid": w.pid,
                    "queues": w.queues,
                    "transport": w.transport,
                    "heartbeat_at": w.heartbeat_at.isoformat(),
                    "job_id": w.job_id,
                    "stages_done": w.stages_done,
                }
                for w in self.workers
            ],
            "queue": {
                "due": self.queue.due,
                "scheduled": self.queue.scheduled,
                "running": self.queue.running,
                "oldest_due_seconds": round(self.queue.oldest_due_seconds, 3),
            },
        }


def check_health(queues: list[str], max_due_age: float | None, using: str = "default") -> Health:
    """Unhealthy when a queue in ``queues`` has no live worker serving it, or the oldest due job has waited
    longer than ``max_due_age`` seconds (``None``: not checked)."""
    now = timezone.now()
    workers = live_workers(now, using)
    health = Health(workers, queue_state(now, using))
    for queue in queues:
        if not any(serves(w, queue) for w in workers):
            health.problems.append(f"no live worker serves queue {queue!r}")
    if max_due_age is not None and health.queue.oldest_due_seconds > max_due_age:
        health.problems.append(
            f"the oldest due job has waited {health.queue.oldest_due_seconds:.0f} s (more than {max_due_age:g} s)"
        )
    return health


def held_jobs(worker_id: str, limit: int = 20, using: str = "default") -> list[WorkflowJob]:
    """The jobs whose lease ``worker_id`` holds or last held, newest first: for a gone worker, what became of
    the jobs it had in hand (RUNNING until their lease expires, then PENDING again, or finished elsewhere)."""
    return list(WorkflowJob.objects.using(using).filter(worker_id=worker_id).order_by("-updated_at", "-id")[:limit])
