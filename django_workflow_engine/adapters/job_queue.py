"""ORM implementation of the kernel's :class:`~django_workflow_engine.kernel.ports.JobQueue` port.

Claims are safe under concurrency: on PostgreSQL the next due row is picked with ``FOR UPDATE SKIP LOCKED``
(workers never wait for each other); on SQLite, whose writers are serialized, a conditional UPDATE makes the
claim atomic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields
from datetime import datetime

from django.db import connections, transaction
from django.db.models import F

from ..core.errors import WorkflowEngineError
from ..core.ids import new_id
from ..kernel.records import JobRecord, NewJob, Status
from ..models import WorkflowJob

JOB_FIELDS = [f.name for f in fields(JobRecord)]


def job_record(row: WorkflowJob) -> JobRecord:
    return JobRecord(**{name: getattr(row, name) for name in JOB_FIELDS})


class OrmJobQueue:
    """Job queue over the ``WorkflowJob`` table.

    Args:
        using: database alias.
        on_enqueue: called with the ids of jobs that became PENDING, after the surrounding transaction
            commits (the Redis doorbell uses this).
    """

    def __init__(self, using: str = "default", on_enqueue: Callable[[list[str]], object] | None = None):
        self.using = using
        self.on_enqueue = on_enqueue

    def _jobs(self):  # type: ignore[no-untyped-def]
        return WorkflowJob.objects.using(self.using)

    @property
    def _pg(self) -> bool:
        return connections[self.using].vendor == "postgresql"

    def _ring(self, ids: list[str]) -> None:
        if self.on_enqueue is not None and ids:
            callback = self.on_enqueue
            transaction.on_commit(lambda: callback(ids), using=self.using, robust=True)

    def enqueue(self, jobs: Sequence[NewJob], now: datetime) -> list[str]:
        rows = [
            WorkflowJob(
                id=new_id(),
                created_at=now,
                updated_at=now,
                run_id=job.run_id,
                workflow_id=job.workflow_id,
                stage_id=job.stage_id,
                priority=job.priority,
                max_attempts=job.max_attempts,
                payload=job.payload,
                available_at=job.available_at or now,
            )
            for job in jobs
        ]
        self._jobs().bulk_create(rows)
        ids = [r.id for r in rows]
        self._ring(ids)
        return ids

    def _take(self, job_id: str, worker_id: str, now: datetime) -> JobRecord | None:
        taken = (
            self._jobs()
            .filter(pk=job_id, status=Status.PENDING, available_at__lte=now)
            .update(
                status=Status.RUNNING,
                attempt=F("attempt") + 1,
                worker_id=worker_id,
                locked_at=now,
                started_at=now,
                updated_at=now,
            )
        )
        return job_record(self._jobs().get(pk=job_id)) if taken else None

    def dequeue(self, worker_id: str, now: datetime) -> JobRecord | None:
        for _ in range(10):
            with transaction.atomic(using=self.using):
                qs = self._jobs().due(now)
                if self._pg:
                    qs = qs.select_for_update(skip_locked=True)
                candidate = qs.values_list("pk", flat=True).first()
                if candidate is None:
                    return None
                job = self._take(candidate, worker_id, now)
                if job is not None:
                    return job
        return None

    def claim(self, job_id: str, worker_id: str, now: datetime) -> JobRecord | None:
        with transaction.atomic(using=self.using):
            return self._take(job_id, worker_id, now)

    def get_job(self, job_id: str) -> JobRecord | None:
        row = self._jobs().filter(pk=job_id).first()
        return job_record(row) if row else None

    def _update(self, job_id: str, **values: object) -> None:
        updated = self._jobs().filter(pk=job_id).exclude(status=Status.CANCELLED).update(**values)
        if not updated and not self._jobs().filter(pk=job_id).exists():
            raise WorkflowEngineError(f"Job {job_id!r} does not exist.")

    def complete(self, job_id: str, now: datetime) -> None:
        self._update(job_id, status=Status.COMPLETED, completed_at=now, worker_id=None, locked_at=None, updated_at=now)

    def suspend(self, job_id: str, next_poll_at: datetime, now: datetime) -> None:
        self._update(
            job_id, status=Status.SUSPENDED, available_at=next_poll_at, worker_id=None, locked_at=None, updated_at=now
        )

    def fail(self, job_id: str, error: str, retry_at: datetime | None, now: datetime) -> None:
        common = {"last_error": error, "worker_id": None, "locked_at": None, "updated_at": now}
        if retry_at is not None:
            self._update(job_id, status=Status.PENDING, available_at=retry_at, **common)
            if self.on_enqueue is not None:
                callback = self.on_enqueue
                transaction.on_commit(lambda: callback([job_id], at=retry_at), using=self.using, robust=True)  # type: ignore[call-arg]
        else:
            self._update(job_id, status=Status.FAILED, completed_at=now, **common)

    def touch(self, job_id: str, worker_id: str, now: datetime) -> bool:
        return bool(self._jobs().filter(pk=job_id, status=Status.RUNNING, worker_id=worker_id).update(locked_at=now))

    def release_stale(self, cutoff: datetime, now: datetime) -> list[JobRecord]:
        with transaction.atomic(using=self.using):
            qs = self._jobs().filter(status=Status.RUNNING, locked_at__lt=cutoff)
            if self._pg:
                qs = qs.select_for_update(skip_locked=True)
            ids = list(qs.values_list("pk", flat=True)[:1000])
            if not ids:
                return []
            self._jobs().filter(pk__in=ids, status=Status.RUNNING, locked_at__lt=cutoff).update(
                status=Status.PENDING, worker_id=None, locked_at=None, available_at=now, updated_at=now
            )
            released = [job_record(r) for r in self._jobs().filter(pk__in=ids, status=Status.PENDING)]
        self._ring([j.id for j in released])
        return released

    def cancel_by_run(self, run_id: str, now: datetime) -> int:
        return (
            self._jobs()
            .filter(run_id=run_id, status__in=[Status.PENDING, Status.SUSPENDED])
            .update(status=Status.CANCELLED, completed_at=now, updated_at=now)
        )

    def complete_suspended(self, run_id: str, stage_id: str, now: datetime) -> None:
        self._jobs().filter(run_id=run_id, stage_id=stage_id, status=Status.SUSPENDED).update(
            status=Status.COMPLETED, completed_at=now, updated_at=now
        )

    def jobs_for_run(self, run_id: str) -> list[JobRecord]:
        return [job_record(r) for r in self._jobs().filter(run_id=run_id).order_by("created_at", "id")]

    def due_pending(self, now: datetime, older_than: datetime, limit: int) -> list[JobRecord]:
        rows = self._jobs().due(now).filter(updated_at__lte=older_than)[:limit]
        return [job_record(r) for r in rows]
