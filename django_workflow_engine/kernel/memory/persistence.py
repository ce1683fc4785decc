"""In-memory :class:`~django_workflow_engine.kernel.ports.Persistence`: the reference semantics the ORM adapter
follows (the conformance suite runs on both)."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from ...core.errors import RunNotFound, StaleVersionError, WorkflowEngineError
from ..records import (
    ACTIVE_STATUSES,
    IN_PROGRESS,
    LIVE_JOB_STATUSES,
    TERMINAL_STATUSES,
    AnnotationRecord,
    IdempotencyClaim,
    LogRecord,
    OutboxRecord,
    RunBatch,
    RunRecord,
    SignalRecord,
    StageRecord,
    Status,
)
from .concurrency import InMemoryConcurrency
from .maps import InMemoryMaps
from .store import Idem, InMemoryStore, shared, stamped

_RUN_FIELDS = {f.name for f in fields(RunRecord)}
_STAGE_FIELDS = {f.name for f in fields(StageRecord)}


class InMemoryPersistence(InMemoryConcurrency, InMemoryMaps):
    """In-memory :class:`~django_workflow_engine.kernel.ports.Persistence`."""

    def __init__(self, store: InMemoryStore | None = None):
        self.store = store or InMemoryStore()
        self._shared = shared(self.store)

    def atomic(self):
        return self._shared.atomic()  # writes here are immediate

    @contextmanager
    def batch(self, run_ids: Sequence[str], stages: bool = False) -> Iterator[RunBatch]:
        # Blocks inside are nested transactions of their own here: one that fails rolls back alone, as if it had
        # run in a transaction of its own, so the batch never breaks.
        with self.atomic():
            runs = {run.id: run for run in (self.get_run(run_id) for run_id in sorted(set(run_ids))) if run}
            yield RunBatch(runs, {run_id: self.get_stages(run_id) for run_id in runs} if stages else {})

    # -- runs -----------------------------------------------------------------------------------------------
    def create_run(self, run: RunRecord, now: datetime) -> RunRecord:
        with self._shared.lock:
            if run.id in self.store.runs:
                raise WorkflowEngineError(f"Workflow run {run.id!r} already exists.")
            stored = replace(copy.deepcopy(run), created_at=now, updated_at=now, version=1)
            self.store.runs[run.id] = stored
            return copy.deepcopy(stored)

    def create_runs(self, runs: Sequence[RunRecord], now: datetime) -> list[RunRecord]:
        with self._shared.lock:
            ids = [run.id for run in runs]
            taken = [i for i in ids if i in self.store.runs] or [i for i in set(ids) if ids.count(i) > 1]
            if taken:
                raise WorkflowEngineError(f"Workflow run {taken[0]!r} already exists.")
            return [self.create_run(run, now) for run in runs]

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._shared.lock:
            run = self.store.runs.get(run_id)
            return copy.deepcopy(run) if run else None

    def get_child_runs(
        self, *, parent_stage_id: str | None = None, parent_run_id: str | None = None
    ) -> list[RunRecord]:
        with self._shared.lock:
            found = [
                copy.deepcopy(r)
                for r in self.store.runs.values()
                if (parent_stage_id is not None and r.parent_stage_id == parent_stage_id)
                or (parent_run_id is not None and r.parent_run_id == parent_run_id)
            ]
        return sorted(found, key=lambda r: stamped(r.created_at))  # stable: insertion order breaks ties

    def wake_suspended_stage(self, stage_pk: str, now: datetime) -> bool:
        with self._shared.lock:
            stage = self.store.stages.get(stage_pk)
            if stage is None or stage.status != Status.SUSPENDED:
                return False
            stage.next_poll_at = now
            stage.updated_at = now
            return True

    def get_run_status(self, run_id: str) -> str | None:
        with self._shared.lock:
            run = self.store.runs.get(run_id)
            return str(run.status) if run else None

    def lock_run(self, run_id: str, known: RunRecord | None = None) -> RunRecord | None:
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
            # A PENDING run with a concurrency key waits for a slot: kernel/concurrency.py starts it.
            pending = [r for r in self.store.runs.values() if r.status == Status.PENDING and r.concurrency_key is None]
            if not pending:
                return None
            run = min(pending, key=lambda r: (-r.priority, r.created_at, r.id))
            run.status = Status.RUNNING
            run.started_at = now
            run.version += 1
            run.updated_at = now
            return copy.deepcopy(run)

    def get_runs_past_deadline(self, now: datetime, limit: int = 100) -> list[RunRecord]:
        with self._shared.lock:
            due = [
                copy.deepcopy(run)
                for run in self.store.runs.values()
                if run.deadline_at is not None and run.deadline_at <= now and run.status not in TERMINAL_STATUSES
            ]
        return sorted(due, key=lambda r: r.deadline_at or now)[:limit]

    def get_stuck_runs(self, cutoff: datetime, limit: int = 100) -> list[RunRecord]:
        with self._shared.lock:
            result = []
            for run in self.store.runs.values():
                if run.status != Status.RUNNING or stamped(run.updated_at) > cutoff:
                    continue
                stages = [s for s in self.store.stages.values() if s.run_id == run.id and s.superseded_at is None]
                if any(stamped(s.updated_at) > cutoff for s in stages):
                    continue
                if any(_suspended_waiting(s, cutoff) for s in stages):
                    continue
                if any(j.run_id == run.id and j.status in LIVE_JOB_STATUSES for j in self.store.jobs.values()):
                    continue
                result.append(copy.deepcopy(run))
            result.sort(key=lambda r: stamped(r.updated_at))
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

    def get_stages_named(self, run_id: str, stage_ids: Sequence[str]) -> list[StageRecord]:
        return [s for s in (self.get_stage(run_id, stage_id) for stage_id in stage_ids) if s is not None]

    def get_stage_history(self, run_id: str) -> list[StageRecord]:
        with self._shared.lock:
            stages = [copy.deepcopy(s) for s in self.store.stages.values() if s.run_id == run_id]
        stages.sort(key=lambda s: (s.attempt, s.execution_group, s.stage_number))
        return stages

    def insert_stages(self, stages: Sequence[StageRecord], now: datetime) -> list[StageRecord]:
        with self._shared.lock:
            for stage in stages:
                if self.get_stage(stage.run_id, stage.stage_id) is not None or stage.id in self.store.stages:
                    raise WorkflowEngineError(f"Stage record {stage.stage_id!r} of run {stage.run_id!r} exists.")
            return self.create_stages(stages, now)

    def create_stages(self, stages: Sequence[StageRecord], now: datetime) -> list[StageRecord]:
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
                if stage.status in ACTIVE_STATUSES:
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
                if stage.run_id == run_id and stage.superseded_at is None and stage.status not in TERMINAL_STATUSES:
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

    def record_event_failure(self, event_id: int, max_retries: int, now: datetime, error: str | None = None) -> bool:
        with self._shared.lock:
            for event in self.store.outbox:
                if event.id == event_id:
                    event.retry_count += 1
                    event.last_error = error
                    if event.retry_count >= max_retries:
                        event.dlq_at = now
                        return True
                    return False
        return False

    def replay_dead_letters(self, limit: int, event_ids: Iterable[int] | None = None) -> int:
        count = 0
        wanted = None if event_ids is None else set(event_ids)
        with self._shared.lock:
            for event in sorted(self.store.outbox, key=lambda e: (e.run_id, e.sequence)):
                if count >= limit:
                    break
                if event.dlq_at is not None and (wanted is None or event.id in wanted):
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
                self.store.idempotency[(key, command_type)] = Idem(dict(IN_PROGRESS), now)
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

    def discard_idempotency_key(self, key: str, command_type: str, run_id: str) -> bool:
        with self._shared.lock:
            row = self.store.idempotency.get((key, command_type))
            if row is None or not isinstance(row.result, dict) or row.result.get("run_id") != run_id:
                return False
            del self.store.idempotency[(key, command_type)]
            return True

    def expire_idempotency_keys(self, cutoff: datetime, limit: int) -> int:
        with self._shared.lock:
            old = sorted((row.created_at, k) for k, row in self.store.idempotency.items() if row.created_at < cutoff)[
                :limit
            ]
            for _, k in old:
                del self.store.idempotency[k]
            return len(old)

    # -- signals --------------------------------------------------------------------------------------------
    def create_signal(self, signal: SignalRecord, now: datetime) -> SignalRecord:
        with self._shared.lock:
            stored = replace(copy.deepcopy(signal), id=self.store.next_int(), received_at=now)
            self.store.signals.append(stored)
            return copy.deepcopy(stored)

    def get_signal_by_key(self, run_id: str, idempotency_key: str) -> SignalRecord | None:
        with self._shared.lock:
            for s in self.store.signals:
                if s.run_id == run_id and s.idempotency_key == idempotency_key:
                    return copy.deepcopy(s)
        return None

    def next_signal(self, run_id: str, name: str) -> SignalRecord | None:
        with self._shared.lock:
            for s in self.store.signals:
                if s.run_id == run_id and s.name == name and s.consumed_by is None:
                    return copy.deepcopy(s)
        return None

    def consume_signal(self, signal_id: int, stage_pk: str, now: datetime) -> None:
        with self._shared.lock:
            for s in self.store.signals:
                if s.id == signal_id:
                    s.consumed_by, s.consumed_at = stage_pk, now

    def get_signals(self, run_id: str) -> list[SignalRecord]:
        with self._shared.lock:
            return [copy.deepcopy(s) for s in self.store.signals if s.run_id == run_id]

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
