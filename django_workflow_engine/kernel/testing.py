"""In-memory implementations of every port: the reference semantics, and fast adapters for unit tests.

``InMemoryStore`` holds all rows; :class:`InMemoryPersistence` and :class:`InMemoryJobQueue` share one store
so a transaction covers both, as the ORM adapters share one database. A transaction snapshots the store and
restores it on error; a re-entrant lock makes transactions serial, like SQLite's single writer.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ..core.errors import BlobNotFound, RunNotFound, StaleVersionError, WorkflowEngineError
from ..core.ids import new_id
from .records import (
    AnnotationRecord,
    IdempotencyClaim,
    JobRecord,
    LogRecord,
    NewJob,
    OutboxRecord,
    RunRecord,
    StageRecord,
    Status,
)

IN_PROGRESS = {"__workflow_engine_state": "in_progress"}
_RUN_FIELDS = {f.name for f in fields(RunRecord)}
_STAGE_FIELDS = {f.name for f in fields(StageRecord)}


class FakeClock:
    """A clock that moves only when told: ``clock.advance(seconds=30)``."""

    def __init__(self, start: datetime | None = None):
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        with self._lock:
            self._now += delta if delta is not None else timedelta(**kwargs)
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class _Idem:
    result: Any
    created_at: datetime


@dataclass
class InMemoryStore:
    runs: dict[str, RunRecord] = field(default_factory=dict)
    stages: dict[str, StageRecord] = field(default_factory=dict)
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    logs: list[LogRecord] = field(default_factory=list)
    outbox: list[OutboxRecord] = field(default_factory=list)
    idempotency: dict[tuple[str, str], _Idem] = field(default_factory=dict)
    annotations: list[AnnotationRecord] = field(default_factory=list)
    counter: int = 0

    def next_int(self) -> int:
        self.counter += 1
        return self.counter


class _Shared:
    """Lock and transaction depth shared by the adapters over one store."""

    def __init__(self, store: InMemoryStore):
        self.store = store
        self.lock = threading.RLock()
        self.depth = threading.local()

    @contextmanager
    def atomic(self) -> Iterator[None]:
        with self.lock:
            snapshot = copy.deepcopy(self.store.__dict__)
            try:
                yield
            except BaseException:
                self.store.__dict__.clear()
                self.store.__dict__.update(snapshot)
                raise


_SHARED: dict[int, _Shared] = {}
_SHARED_LOCK = threading.Lock()


def _shared(store: InMemoryStore) -> _Shared:
    with _SHARED_LOCK:
        shared = _SHARED.get(id(store))
        if shared is None or shared.store is not store:
            shared = _SHARED[id(store)] = _Shared(store)
        return shared


class InMemoryPersistence:
    """In-memory :class:`~django_workflow_engine.kernel.ports.Persistence`."""

    def __init__(self, store: InMemoryStore | None = None):
        self.store = store or InMemoryStore()
        self._shared = _shared(self.store)

    def atomic(self, defer_writes: bool = False):  # type: ignore[no-untyped-def]
        return self._shared.atomic()  # writes here are immediate; deferring them would change nothing

    # -- runs -----------------------------------------------------------------------------------------------
    def create_run(self, run: RunRecord, now: datetime) -> RunRecord:
        with self._shared.lock:
            if run.id in self.store.runs:
                raise WorkflowEngineError(f"Workflow run {run.id!r} already exists.")
            stored = replace(copy.deepcopy(run), created_at=now, updated_at=now, version=1)
            self.store.runs[run.id] = stored
            return copy.deepcopy(stored)

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._shared.lock:
            run = self.store.runs.get(run_id)
            return copy.deepcopy(run) if run else None

    def lock_run(self, run_id: str) -> RunRecord | None:
        return self.get_run(run_id)

    def update_run(
        self, run_id: str, fields: Mapping[str, Any], now: datetime, expected_version: int | None = None
    ) -> int:
        with self._shared.lock:
            run = self.store.runs.get(run_id)
            if run is None:
                raise RunNotFound(run_id)
            if expected_version is not None and run.version != expected_version:
                raise StaleVersionError("WorkflowRun", run_id, expected_version, run.version)
            for name, value in fields.items():
                if name not in _RUN_FIELDS:
                    raise AttributeError(f"RunRecord has no field {name!r}")
                setattr(run, name, copy.deepcopy(value))
            run.version += 1
            run.updated_at = now
            return run.version

    def claim_next_pending_run(self, now: datetime) -> RunRecord | None:
        with self._shared.lock:
            pending = [r for r in self.store.runs.values() if r.status == Status.PENDING]
            if not pending:
                return None
            run = min(pending, key=lambda r: (-r.priority, r.created_at, r.id))
            run.status = Status.RUNNING
            run.started_at = now
            run.version += 1
            run.updated_at = now
            return copy.deepcopy(run)

    def get_stuck_runs(self, cutoff: datetime, limit: int = 100) -> list[RunRecord]:
        with self._shared.lock:
            result = []
            for run in self.store.runs.values():
                if run.status != Status.RUNNING or run.updated_at > cutoff:
                    continue
                stages = [s for s in self.store.stages.values() if s.run_id == run.id and s.superseded_at is None]
                if any(s.updated_at > cutoff for s in stages):
                    continue
                if any(_suspended_waiting(s, cutoff) for s in stages):
                    continue
                if any(
                    j.run_id == run.id and j.status in (Status.PENDING, Status.RUNNING)
                    for j in self.store.jobs.values()
                ):
                    continue
                result.append(copy.deepcopy(run))
            result.sort(key=lambda r: r.updated_at)
            return result[:limit]

    def add_run_totals(self, run_id: str, cost: Decimal, tokens: int) -> None:
        with self._shared.lock:
            run = self.store.runs.get(run_id)
            if run is not None:
                run.total_cost += Decimal(cost)
                run.total_tokens += int(tokens)

    # -- stages ---------------------------------------------------------------------------------------------
    def get_stages(self, run_id: str) -> list[StageRecord]:
        with self._shared.lock:
            stages = [
                copy.deepcopy(s) for s in self.store.stages.values() if s.run_id == run_id and s.superseded_at is None
            ]
        stages.sort(key=lambda s: (s.execution_group, s.stage_number))
        return stages

    def get_stage(self, run_id: str, stage_id: str) -> StageRecord | None:
        with self._shared.lock:
            for stage in self.store.stages.values():
                if stage.run_id == run_id and stage.stage_id == stage_id and stage.superseded_at is None:
                    return copy.deepcopy(stage)
        return None

    def get_stage_history(self, run_id: str) -> list[StageRecord]:
        with self._shared.lock:
            stages = [copy.deepcopy(s) for s in self.store.stages.values() if s.run_id == run_id]
        stages.sort(key=lambda s: (s.attempt, s.execution_group, s.stage_number))
        return stages

    def create_stages(self, stages: Sequence[StageRecord], now: datetime, known_new: bool = False) -> list[StageRecord]:
        out = []
        with self._shared.lock:
            for stage in stages:
                existing = self.get_stage(stage.run_id, stage.stage_id)
                if existing is not None:
                    out.append(existing)
                    continue
                stored = replace(copy.deepcopy(stage), created_at=now, updated_at=now, version=1)
                self.store.stages[stored.id] = stored
                out.append(copy.deepcopy(stored))
        return out

    def update_stage(
        self, stage_pk: str, fields: Mapping[str, Any], now: datetime, expected_version: int | None = None
    ) -> int:
        with self._shared.lock:
            stage = self.store.stages.get(stage_pk)
            if stage is None:
                raise WorkflowEngineError(f"Stage record {stage_pk!r} does not exist.")
            if stage.superseded_at is not None:
                raise WorkflowEngineError(f"Stage record {stage_pk!r} was superseded by a rerun; it is read-only.")
            if expected_version is not None and stage.version != expected_version:
                raise StaleVersionError("WorkflowStage", stage_pk, expected_version, stage.version)
            for name, value in fields.items():
                if name not in _STAGE_FIELDS:
                    raise AttributeError(f"StageRecord has no field {name!r}")
                setattr(stage, name, copy.deepcopy(value))
            stage.version += 1
            stage.updated_at = now
            return stage.version

    def supersede_stages_from_group(
        self, run_id: str, group: int, now: datetime, actor: str | None = None
    ) -> list[StageRecord]:
        with self._shared.lock:
            replaced = [
                s
                for s in self.store.stages.values()
                if s.run_id == run_id and s.execution_group >= group and s.superseded_at is None
            ]
            replaced.sort(key=lambda s: (s.execution_group, s.stage_number))
            before = [copy.deepcopy(s) for s in replaced]
            for stage in replaced:
                if stage.status in (Status.PENDING, Status.RUNNING, Status.SUSPENDED):
                    stage.status = Status.CANCELLED
                    stage.completed_at = now
                    stage.next_poll_at = None
                stage.superseded_at = now
                stage.superseded_by = actor
                stage.version += 1
                stage.updated_at = now
            return before

    def cancel_open_stages(self, run_id: str, now: datetime) -> int:
        count = 0
        with self._shared.lock:
            for stage in self.store.stages.values():
                if (
                    stage.run_id == run_id
                    and stage.superseded_at is None
                    and stage.status not in (Status.COMPLETED, Status.FAILED, Status.CANCELLED)
                ):
                    stage.status = Status.CANCELLED
                    stage.completed_at = now
                    stage.next_poll_at = None
                    stage.version += 1
                    stage.updated_at = now
                    count += 1
        return count

    def get_due_suspended_stages(self, now: datetime, limit: int) -> list[StageRecord]:
        with self._shared.lock:
            due = [
                copy.deepcopy(s)
                for s in self.store.stages.values()
                if s.status == Status.SUSPENDED
                and s.superseded_at is None
                and s.next_poll_at is not None
                and s.next_poll_at <= now
            ]
        due.sort(key=lambda s: (s.next_poll_at, s.id))
        return due[:limit]

    # -- logs -----------------------------------------------------------------------------------------------
    def create_log(
        self,
        run_id: str | None,
        stage_pk: str | None,
        level: str,
        message: str,
        metadata: Mapping[str, Any] | None,
        now: datetime,
    ) -> None:
        with self._shared.lock:
            self.store.logs.append(
                LogRecord(
                    self.store.next_int(),
                    run_id,
                    stage_pk,
                    level,
                    message,
                    copy.deepcopy(dict(metadata or {})) or None,
                    now,
                )
            )

    def get_logs(self, run_id: str) -> list[LogRecord]:
        with self._shared.lock:
            return [copy.deepcopy(log) for log in self.store.logs if log.run_id == run_id]

    # -- outbox ---------------------------------------------------------------------------------------------
    def append_events(self, events: Sequence[Mapping[str, Any]], causation_id: str) -> None:
        with self._shared.lock:
            for event in events:
                run_id = event["workflow_run_id"]
                sequence = 1 + max((e.sequence for e in self.store.outbox if e.run_id == run_id), default=0)
                self.store.outbox.append(
                    OutboxRecord(
                        id=self.store.next_int(),
                        run_id=run_id,
                        sequence=sequence,
                        event_type=event["type"],
                        payload=copy.deepcopy(dict(event)),
                        causation_id=causation_id,
                        occurred_at=datetime.fromisoformat(event["timestamp"]),
                    )
                )

    def get_unpublished_events(self, limit: int) -> list[OutboxRecord]:
        with self._shared.lock:
            rows = [copy.deepcopy(e) for e in self.store.outbox if e.published_at is None and e.dlq_at is None]
        rows.sort(key=lambda e: (e.run_id, e.sequence))
        return rows[:limit]

    def get_events(self, run_id: str) -> list[OutboxRecord]:
        with self._shared.lock:
            rows = [copy.deepcopy(e) for e in self.store.outbox if e.run_id == run_id]
        return sorted(rows, key=lambda e: e.sequence)

    def mark_events_published(self, ids: Iterable[int], now: datetime) -> None:
        wanted = set(ids)
        with self._shared.lock:
            for event in self.store.outbox:
                if event.id in wanted:
                    event.published_at = now

    def record_event_failure(self, event_id: int, max_retries: int, now: datetime) -> bool:
        with self._shared.lock:
            for event in self.store.outbox:
                if event.id == event_id:
                    event.retry_count += 1
                    if event.retry_count >= max_retries:
                        event.dlq_at = now
                        return True
                    return False
        return False

    def replay_dead_letters(self, limit: int) -> int:
        count = 0
        with self._shared.lock:
            for event in sorted(self.store.outbox, key=lambda e: (e.run_id, e.sequence)):
                if count >= limit:
                    break
                if event.dlq_at is not None:
                    event.dlq_at = None
                    event.retry_count = 0
                    count += 1
        return count

    # -- idempotency ----------------------------------------------------------------------------------------
    def acquire_idempotency_key(
        self, key: str, command_type: str, now: datetime, stale_after_seconds: float | None
    ) -> IdempotencyClaim:
        with self._shared.lock:
            row = self.store.idempotency.get((key, command_type))
            if row is None:
                self.store.idempotency[(key, command_type)] = _Idem(dict(IN_PROGRESS), now)
                return IdempotencyClaim("acquired")
            if row.result != IN_PROGRESS:
                return IdempotencyClaim("replay", copy.deepcopy(row.result))
            if stale_after_seconds is not None and now - row.created_at >= timedelta(seconds=stale_after_seconds):
                row.created_at = now
                return IdempotencyClaim("acquired")
            return IdempotencyClaim("in_progress")

    def complete_idempotency_key(self, key: str, command_type: str, result: Any) -> None:
        with self._shared.lock:
            row = self.store.idempotency.get((key, command_type))
            if row is not None:
                row.result = copy.deepcopy(result)

    def release_idempotency_key(self, key: str, command_type: str) -> None:
        with self._shared.lock:
            self.store.idempotency.pop((key, command_type), None)

    # -- annotations ----------------------------------------------------------------------------------------
    def append_annotations(self, annotations: Sequence[AnnotationRecord], now: datetime) -> list[AnnotationRecord]:
        written = []
        with self._shared.lock:
            for annotation in annotations:
                if annotation.idempotency_key is not None and any(
                    a.run_id == annotation.run_id
                    and a.key == annotation.key
                    and a.idempotency_key == annotation.idempotency_key
                    for a in self.store.annotations
                ):
                    continue
                stored = replace(copy.deepcopy(annotation), id=self.store.next_int(), created_at=now)
                self.store.annotations.append(stored)
                written.append(copy.deepcopy(stored))
        return written

    def list_annotations(self, run_id: str, filters: Mapping[str, Any]) -> list[AnnotationRecord]:
        with self._shared.lock:
            rows = [
                copy.deepcopy(a)
                for a in self.store.annotations
                if a.run_id == run_id and _annotation_matches(a, filters)
            ]
        rows.sort(key=lambda a: (a.created_at, a.id))
        return rows[: filters.get("limit") or 1000]


def _suspended_waiting(stage: StageRecord, cutoff: datetime) -> bool:
    if stage.status != Status.SUSPENDED:
        return False
    return (stage.next_poll_at is not None and stage.next_poll_at > cutoff) or (
        stage.max_wait_until is not None and stage.max_wait_until > cutoff
    )


def _annotation_matches(a: AnnotationRecord, f: Mapping[str, Any]) -> bool:
    if f.get("key") is not None:
        if a.key != f["key"]:
            return False
    elif f.get("key_prefix") is not None and not a.key.startswith(f["key_prefix"]):
        return False
    for name in ("scope", "scope_id", "actor_id", "actor_kind", "attempt"):
        if f.get(name) is not None and getattr(a, name) != f[name]:
            return False
    if f.get("since") is not None and a.created_at < f["since"]:
        return False
    return not (f.get("until") is not None and a.created_at > f["until"])


class InMemoryJobQueue:
    """In-memory :class:`~django_workflow_engine.kernel.ports.JobQueue` over the same store as the persistence."""

    def __init__(self, store: InMemoryStore):
        self.store = store
        self._shared = _shared(store)

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
            due = [j for j in self.store.jobs.values() if j.status == Status.PENDING and j.available_at <= now]
            if not due:
                return None
            job = min(due, key=lambda j: (-j.priority, j.created_at, j.__dict__.get("_seq", 0)))
            return self._take(job, worker_id, now)

    def claim(self, job_id: str, worker_id: str, now: datetime) -> JobRecord | None:
        with self._shared.lock:
            job = self.store.jobs.get(job_id)
            if job is None or job.status != Status.PENDING or job.available_at > now:
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
                and j.available_at <= now
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
            if retry_at is not None:
                job.status = Status.PENDING
                job.available_at = retry_at
            else:
                job.status = Status.FAILED
                job.completed_at = now

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
                if j.status == Status.PENDING and j.available_at <= now and j.updated_at <= older_than
            ]
        jobs.sort(key=lambda j: (-j.priority, j.created_at))
        return jobs[:limit]


def _copy_job(job: JobRecord) -> JobRecord:
    clone = copy.deepcopy(job)
    clone.__dict__.pop("_seq", None)
    return clone


class InMemoryBlobStore:
    """JSON blobs in a dict (values are deep-copied in and out, like a JSON round trip)."""

    def __init__(self) -> None:
        self.blobs: dict[str, Any] = {}
        self._lock = threading.Lock()

    def put(self, key: str, data: Any) -> None:
        with self._lock:
            self.blobs[key] = copy.deepcopy(data)

    def get(self, key: str) -> Any:
        with self._lock:
            if key not in self.blobs:
                raise BlobNotFound(key)
            return copy.deepcopy(self.blobs[key])

    def has(self, key: str) -> bool:
        with self._lock:
            return key in self.blobs

    def delete(self, key: str) -> None:
        with self._lock:
            self.blobs.pop(key, None)

    def list(self, prefix: str) -> list[str]:
        with self._lock:
            return sorted(k for k in self.blobs if k.startswith(prefix))


class CollectingEventSink:
    """Collects emitted events in ``events``; ``fail_times`` makes the next N emits raise."""

    def __init__(self, max_retries: int = 3) -> None:
        self.events: list[dict[str, Any]] = []
        self.max_retries = max_retries
        self.fail_times = 0

    def emit(self, event: Mapping[str, Any]) -> None:
        if self.fail_times > 0:
            self.fail_times -= 1
            raise RuntimeError("event sink failure (injected)")
        self.events.append(dict(event))

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]


class DictRegistry:
    """A registry over a dict or list of workflows."""

    def __init__(self, workflows: Iterable[Any] | Mapping[str, Any] = ()) -> None:
        if isinstance(workflows, Mapping):
            self._workflows = dict(workflows)
        else:
            self._workflows = {w.id: w for w in workflows}

    def get(self, workflow_id: str) -> Any:
        return self._workflows.get(workflow_id)

    def ids(self) -> list[str]:
        return sorted(self._workflows)

    def add(self, workflow: Any) -> None:
        self._workflows[workflow.id] = workflow
