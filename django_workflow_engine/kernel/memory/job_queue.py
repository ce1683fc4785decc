"""In-memory :class:`~django_workflow_engine.kernel.ports.JobQueue` over the persistence's store."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import datetime

from ...core.errors import WorkflowEngineError
from ...core.ids import new_id
from ..records import (
    JobRecord,
    NewJob,
    Status,
)
from .store import InMemoryStore, shared, stamped


class InMemoryJobQueue:
    """In-memory :class:`~django_workflow_engine.kernel.ports.JobQueue` over the same store as the persistence."""

    def __init__(self, store: InMemoryStore):
        self.store = store
        self._shared = shared(store)

    def enqueue(self, jobs: Sequence[NewJob], now: datetime) -> list[str]:
        ids = []
        with self._shared.lock:
            for job in jobs:
                job_id = new_id()
                self.store.jobs[job_id] = JobRecord(
                    id=job_id,
                    run_id=job.run_id,
                    workflow_id=job.workflow_id,
                    stage_id=job.stage_id,
                    priority=job.priority,
                    max_attempts=job.max_attempts,
                    payload=copy.deepcopy(job.payload),
                    available_at=job.available_at or now,
                    created_at=now,
                    updated_at=now,
                    # created_at ties are broken by insertion order, kept in this counter
                    last_error=None,
                )
                if job.claimed_by is not None:
                    self._take(self.store.jobs[job_id], job.claimed_by, now)
                self.store.jobs[job_id].__dict__["_seq"] = self.store.next_int()
                ids.append(job_id)
        return ids

    def _take(self, job: JobRecord, worker_id: str, now: datetime) -> JobRecord:
        job.status = Status.RUNNING
        job.attempt += 1
        job.worker_id = worker_id
        job.locked_at = now
        job.started_at = now
        job.updated_at = now
        return _copy_job(job)

    def dequeue(self, worker_id: str, now: datetime) -> JobRecord | None:
        with self._shared.lock:
            due = [j for j in self.store.jobs.values() if j.status == Status.PENDING and stamped(j.available_at) <= now]
            if not due:
                return None
            job = min(due, key=lambda j: (-j.priority, j.created_at, j.__dict__.get("_seq", 0)))
            return self._take(job, worker_id, now)

    def dequeue_many(self, worker_id: str, now: datetime, limit: int) -> list[JobRecord]:
        if limit < 1:
            raise ValueError(f"dequeue_many needs a limit of at least 1, not {limit}")
        jobs: list[JobRecord] = []
        while len(jobs) < limit and (job := self.dequeue(worker_id, now)) is not None:
            jobs.append(job)
        return jobs

    def claim(self, job_id: str, worker_id: str, now: datetime) -> JobRecord | None:
        with self._shared.lock:
            job = self.store.jobs.get(job_id)
            if job is None or job.status != Status.PENDING or stamped(job.available_at) > now:
                return None
            return self._take(job, worker_id, now)

    def claim_stage(self, run_id: str, stage_id: str, worker_id: str, now: datetime) -> JobRecord | None:
        with self._shared.lock:
            due = [
                j
                for j in self.store.jobs.values()
                if j.run_id == run_id
                and j.stage_id == stage_id
                and j.status == Status.PENDING
                and stamped(j.available_at) <= now
            ]
            if not due:
                return None
            return self._take(min(due, key=lambda j: (j.created_at, j.__dict__.get("_seq", 0))), worker_id, now)

    def claim_item(self, run_id: str, map_stage_id: str, worker_id: str, now: datetime) -> JobRecord | None:
        prefix = f"{map_stage_id}["
        with self._shared.lock:
            due = [
                j
                for j in self.store.jobs.values()
                if j.run_id == run_id
                and j.stage_id.startswith(prefix)
                and j.status == Status.PENDING
                and stamped(j.available_at) <= now
            ]
            if not due:
                return None
            return self._take(min(due, key=lambda j: (j.created_at, j.__dict__.get("_seq", 0))), worker_id, now)

    def get_job(self, job_id: str) -> JobRecord | None:
        with self._shared.lock:
            job = self.store.jobs.get(job_id)
            return _copy_job(job) if job else None

    def _get(self, job_id: str) -> JobRecord:
        job = self.store.jobs.get(job_id)
        if job is None:
            raise WorkflowEngineError(f"Job {job_id!r} does not exist.")
        return job

    def complete(self, job_id: str, now: datetime) -> None:
        with self._shared.lock:
            job = self._get(job_id)
            if job.status == Status.CANCELLED:
                return
            job.status = Status.COMPLETED
            job.completed_at = now
            job.worker_id = None
            job.locked_at = None
            job.updated_at = now

    def suspend(self, job_id: str, next_poll_at: datetime, now: datetime) -> None:
        with self._shared.lock:
            job = self._get(job_id)
            if job.status == Status.CANCELLED:
                return
            job.status = Status.SUSPENDED
            job.available_at = next_poll_at
            job.worker_id = None
            job.locked_at = None
            job.updated_at = now

    def fail(self, job_id: str, error: str, retry_at: datetime | None, now: datetime) -> None:
        with self._shared.lock:
            job = self._get(job_id)
            if job.status == Status.CANCELLED:
                return
            job.last_error = error
            job.worker_id = None
            job.locked_at = None
            job.updated_at = now
            job.wait_reason = None
            if retry_at is not None:
                job.status = Status.PENDING
                job.available_at = retry_at
            else:
                job.status = Status.FAILED
                job.completed_at = now

    def defer(self, job_id: str, until: datetime, reason: str, now: datetime) -> None:
        with self._shared.lock:
            job = self.store.jobs.get(job_id)
            if job is None or job.status != Status.RUNNING:
                return
            job.status = Status.PENDING
            job.attempt = max(0, job.attempt - 1)
            job.worker_id = None
            job.locked_at = None
            job.available_at = until
            job.wait_reason = reason[:200]
            job.updated_at = now

    def release(self, job_id: str, worker_id: str, now: datetime) -> bool:
        with self._shared.lock:
            job = self.store.jobs.get(job_id)
            if job is None or job.status != Status.RUNNING or job.worker_id != worker_id:
                return False
            job.status = Status.PENDING
            job.attempt = max(0, job.attempt - 1)
            job.worker_id = None
            job.locked_at = None
            job.started_at = None
            job.available_at = now
            job.updated_at = now
            return True

    def touch(self, job_id: str, worker_id: str, now: datetime) -> bool:
        with self._shared.lock:
            job = self.store.jobs.get(job_id)
            if job is None or job.status != Status.RUNNING or job.worker_id != worker_id:
                return False
            job.locked_at = now
            return True

    def release_stale(self, cutoff: datetime, now: datetime) -> list[JobRecord]:
        released = []
        with self._shared.lock:
            for job in self.store.jobs.values():
                if job.status == Status.RUNNING and job.locked_at is not None and job.locked_at < cutoff:
                    job.status = Status.PENDING
                    job.worker_id = None
                    job.locked_at = None
                    job.available_at = now
                    job.updated_at = now
                    released.append(_copy_job(job))
        return released

    def cancel_by_run(self, run_id: str, now: datetime, include_running: bool = False) -> int:
        statuses = (
            (Status.PENDING, Status.SUSPENDED, Status.RUNNING)
            if include_running
            else (Status.PENDING, Status.SUSPENDED)
        )
        count = 0
        with self._shared.lock:
            for job in self.store.jobs.values():
                if job.run_id == run_id and job.status in statuses:
                    job.status = Status.CANCELLED
                    job.completed_at = now
                    job.updated_at = now
                    count += 1
        return count

    def complete_suspended(self, run_id: str, stage_id: str, now: datetime) -> None:
        with self._shared.lock:
            for job in self.store.jobs.values():
                if job.run_id == run_id and job.stage_id == stage_id and job.status == Status.SUSPENDED:
                    job.status = Status.COMPLETED
                    job.completed_at = now
                    job.updated_at = now

    def wake_suspended(self, run_id: str, stage_id: str, now: datetime) -> bool:
        woken = False
        with self._shared.lock:
            for job in self.store.jobs.values():
                if job.run_id == run_id and job.stage_id == stage_id and job.status == Status.SUSPENDED:
                    job.status = Status.PENDING
                    job.attempt = max(0, job.attempt - 1)
                    job.available_at = now
                    job.wait_reason = None
                    job.updated_at = now
                    woken = True
        return woken

    def jobs_for_run(self, run_id: str) -> list[JobRecord]:
        with self._shared.lock:
            jobs = [j for j in self.store.jobs.values() if j.run_id == run_id]
            # created_at ties are broken by insertion order, as in dequeue
            jobs.sort(key=lambda j: (j.created_at, j.__dict__.get("_seq", 0)))
            return [_copy_job(j) for j in jobs]

    def due_pending(self, now: datetime, older_than: datetime, limit: int) -> list[JobRecord]:
        with self._shared.lock:
            jobs = [
                _copy_job(j)
                for j in self.store.jobs.values()
                if j.status == Status.PENDING and stamped(j.available_at) <= now and stamped(j.updated_at) <= older_than
            ]
        jobs.sort(key=lambda j: (-j.priority, j.created_at))
        return jobs[:limit]


def _copy_job(job: JobRecord) -> JobRecord:
    clone = copy.deepcopy(job)
    clone.__dict__.pop("_seq", None)
    return clone
