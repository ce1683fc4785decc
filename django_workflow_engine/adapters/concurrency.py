"""ORM side of run concurrency limits (mixed into :class:`~.persistence.OrmPersistence`).

A slot is held by a RUNNING run with a ``concurrency_key``: no slot row can outlive its run, so a worker that
dies mid-run leaks nothing (the run is retried or reaped, and its slot ends with it). Admission serializes
per key: PostgreSQL takes a transaction-level advisory lock on the (workflow, key) pair; SQLite runs one
writer at a time (``BEGIN IMMEDIATE``), so a count and the write that follows it cannot interleave.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

from django.db import connections
from django.db.models import Count, Q

from ..kernel.records import RunRecord
from ..models import WorkflowRun, WorkflowStage
from ..models.status import Status
from .statements import dialect, lock_concurrency_key, lock_stage_limit


class OrmConcurrency:
    using: str

    def lock_concurrency_key(self, workflow_id: str, key: str) -> None:
        connection = connections[self.using]
        if dialect(connection).advisory_locks:
            with connection.cursor() as cursor:
                cursor.execute(*lock_concurrency_key(workflow_id, key))

    def lock_stage_limit(self, workflow_id: str, stage_id: str) -> None:
        connection = connections[self.using]
        if dialect(connection).advisory_locks:
            with connection.cursor() as cursor:
                cursor.execute(*lock_stage_limit(workflow_id, stage_id))

    def running_stage_count(self, workflow_id: str, stage_id: str, exclude_id: str) -> int:
        return (
            WorkflowStage.objects.using(self.using)
            .filter(
                stage_id=stage_id,
                status=Status.RUNNING,
                superseded_at__isnull=True,
                run__workflow_id=workflow_id,
                run__status=Status.RUNNING,
            )
            .exclude(pk=exclude_id)
            .count()
        )

    def concurrency_counts(self, workflow_id: str, key: str, now: datetime | None = None) -> tuple[int, int]:
        counts = (
            WorkflowRun.objects.using(self.using)
            .filter(workflow_id=workflow_id, concurrency_key=key, status__in=[Status.RUNNING, Status.PENDING])
            .aggregate(
                running=Count("pk", filter=Q(status=Status.RUNNING)),
                waiting=Count("pk", filter=Q(status=Status.PENDING) & _due(now)),
            )
        )
        return counts["running"], counts["waiting"]

    def waiting_runs(self, workflow_id: str, key: str, limit: int, now: datetime | None = None) -> list[Any]:
        rows = (
            WorkflowRun.objects.using(self.using)
            .filter(_due(now), workflow_id=workflow_id, concurrency_key=key, status=Status.PENDING)
            .order_by("-priority", "created_at", "id")[:limit]
        )
        return [RunRecord(**{f.name: getattr(row, f.name) for f in fields(RunRecord)}) for row in rows]

    def waiting_concurrency_keys(self, limit: int, now: datetime | None = None) -> list[tuple[str, str]]:
        rows = (
            WorkflowRun.objects.using(self.using)
            .waiting_for_slot()
            .filter(_due(now))
            .values_list("workflow_id", "concurrency_key")
            .distinct()
            .order_by("workflow_id", "concurrency_key")[:limit]
        )
        return [(w, k) for w, k in rows]


def _due(now: datetime | None) -> Q:
    """Waiting runs that may take a slot at ``now``: a delayed start not due yet holds none and waits none."""
    return Q() if now is None else Q(scheduled_at__isnull=True) | Q(scheduled_at__lte=now)
