"""ORM implementation of the kernel's :class:`~django_workflow_engine.kernel.ports.Persistence` port."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models import Exists, F, Max, OuterRef, Q

from ..core.errors import RunNotFound, StaleVersionError, WorkflowEngineError
from ..kernel.records import AnnotationRecord, IdempotencyClaim, LogRecord, OutboxRecord, RunRecord, StageRecord, Status
from ..models import IdempotencyKey, OutboxEvent, WorkflowAnnotation, WorkflowLog, WorkflowRun, WorkflowStage

IN_PROGRESS = {"__workflow_engine_state": "in_progress"}
RUN_FIELDS = [f.name for f in fields(RunRecord)]
STAGE_FIELDS = [f.name for f in fields(StageRecord)]


def run_record(row: WorkflowRun) -> RunRecord:
    return RunRecord(**{name: getattr(row, name) for name in RUN_FIELDS})


def stage_record(row: WorkflowStage) -> StageRecord:
    return StageRecord(**{name: getattr(row, name) for name in STAGE_FIELDS})


class OrmPersistence:
    """Persistence over the Django ORM (SQLite or PostgreSQL)."""

    def __init__(self, using: str = "default"):
        self.using = using

    @property
    def _pg(self) -> bool:
        return connections[self.using].vendor == "postgresql"

    def atomic(self):  # type: ignore[no-untyped-def]
        return transaction.atomic(using=self.using)

    def _runs(self):  # type: ignore[no-untyped-def]
        return WorkflowRun.objects.using(self.using)

    def _stages(self):  # type: ignore[no-untyped-def]
        return WorkflowStage.objects.using(self.using)

    # -- runs -----------------------------------------------------------------------------------------------
    def create_run(self, run: RunRecord, now: datetime) -> RunRecord:
        data = {name: getattr(run, name) for name in RUN_FIELDS}
        data.update(created_at=now, updated_at=now, version=1)
        row = WorkflowRun(**data)
        row.save(using=self.using, force_insert=True)
        return run_record(row)

    def get_run(self, run_id: str) -> RunRecord | None:
        row = self._runs().filter(pk=run_id).first()
        return run_record(row) if row else None

    def lock_run(self, run_id: str) -> RunRecord | None:
        qs = self._runs().filter(pk=run_id)
        if self._pg:
            qs = qs.select_for_update()
        row = qs.first()
        return run_record(row) if row else None

    def update_run(
        self, run_id: str, fields: Mapping[str, Any], now: datetime, expected_version: int | None = None
    ) -> int:
        for name in fields:
            if name not in RUN_FIELDS or name in ("id", "version", "created_at"):
                raise AttributeError(f"RunRecord has no writable field {name!r}")
        qs = self._runs().filter(pk=run_id)
        if expected_version is not None:
            qs = qs.filter(version=expected_version)
        if qs.update(**fields, updated_at=now, version=F("version") + 1) == 0:
            actual = self._runs().filter(pk=run_id).values_list("version", flat=True).first()
            if actual is None:
                raise RunNotFound(run_id)
            raise StaleVersionError("WorkflowRun", run_id, expected_version or 0, actual)
        return self._runs().filter(pk=run_id).values_list("version", flat=True).get()

    def claim_next_pending_run(self, now: datetime) -> RunRecord | None:
        for _ in range(10):
            with transaction.atomic(using=self.using):
                qs = self._runs().filter(status=Status.PENDING).order_by("-priority", "created_at", "id")
                if self._pg:
                    qs = qs.select_for_update(skip_locked=True)
                candidate = qs.values_list("pk", flat=True).first()
                if candidate is None:
                    return None
                claimed = (
                    self._runs()
                    .filter(pk=candidate, status=Status.PENDING)
                    .update(status=Status.RUNNING, started_at=now, updated_at=now, version=F("version") + 1)
                )
                if claimed:
                    return run_record(self._runs().get(pk=candidate))
        return None

    def get_stuck_runs(self, cutoff: datetime, limit: int = 100) -> list[RunRecord]:
        busy_stage = WorkflowStage.objects.filter(run=OuterRef("pk")).filter(
            Q(updated_at__gt=cutoff)
            | Q(status=Status.SUSPENDED, next_poll_at__gt=cutoff)
            | Q(status=Status.SUSPENDED, max_wait_until__gt=cutoff)
        )
        rows = (
            self._runs()
            .filter(status=Status.RUNNING, updated_at__lte=cutoff)
            .filter(~Exists(busy_stage))
            .order_by("updated_at")[:limit]
        )
        return [run_record(r) for r in rows]

    def add_run_totals(self, run_id: str, cost: Decimal, tokens: int) -> None:
        self._runs().filter(pk=run_id).update(
            total_cost=F("total_cost") + Decimal(cost), total_tokens=F("total_tokens") + int(tokens)
        )

    # -- stages ---------------------------------------------------------------------------------------------
    def get_stages(self, run_id: str) -> list[StageRecord]:
        return [
            stage_record(r) for r in self._stages().filter(run_id=run_id).order_by("execution_group", "stage_number")
        ]

    def get_stage(self, run_id: str, stage_id: str) -> StageRecord | None:
        row = self._stages().filter(run_id=run_id, stage_id=stage_id).first()
        return stage_record(row) if row else None

    def create_stages(self, stages: Sequence[StageRecord], now: datetime) -> list[StageRecord]:
        if not stages:
            return []
        rows = []
        for stage in stages:
            data = {name: getattr(stage, name) for name in STAGE_FIELDS}
            data.update(created_at=now, updated_at=now, version=1)
            rows.append(WorkflowStage(**data))
        WorkflowStage.objects.using(self.using).bulk_create(rows, ignore_conflicts=True)
        by_id = {
            r.stage_id: stage_record(r)
            for r in self._stages().filter(run_id=stages[0].run_id, stage_id__in=[s.stage_id for s in stages])
        }
        return [by_id[s.stage_id] for s in stages]

    def update_stage(
        self, stage_pk: str, fields: Mapping[str, Any], now: datetime, expected_version: int | None = None
    ) -> int:
        for name in fields:
            if name not in STAGE_FIELDS or name in ("id", "version", "created_at", "run_id"):
                raise AttributeError(f"StageRecord has no writable field {name!r}")
        qs = self._stages().filter(pk=stage_pk)
        if expected_version is not None:
            qs = qs.filter(version=expected_version)
        if qs.update(**fields, updated_at=now, version=F("version") + 1) == 0:
            actual = self._stages().filter(pk=stage_pk).values_list("version", flat=True).first()
            if actual is None:
                raise WorkflowEngineError(f"Stage record {stage_pk!r} does not exist.")
            raise StaleVersionError("WorkflowStage", stage_pk, expected_version or 0, actual)
        return self._stages().filter(pk=stage_pk).values_list("version", flat=True).get()

    def delete_stages_from_group(self, run_id: str, group: int) -> list[StageRecord]:
        qs = (
            self._stages().filter(run_id=run_id, execution_group__gte=group).order_by("execution_group", "stage_number")
        )
        doomed = [stage_record(r) for r in qs]
        if doomed:
            self._stages().filter(pk__in=[s.id for s in doomed]).delete()
        return doomed

    def cancel_open_stages(self, run_id: str, now: datetime) -> int:
        return (
            self._stages()
            .filter(run_id=run_id)
            .exclude(status__in=[Status.COMPLETED, Status.FAILED, Status.CANCELLED])
            .update(
                status=Status.CANCELLED, completed_at=now, next_poll_at=None, updated_at=now, version=F("version") + 1
            )
        )

    def get_due_suspended_stages(self, now: datetime, limit: int) -> list[StageRecord]:
        rows = (
            self._stages().filter(status=Status.SUSPENDED, next_poll_at__lte=now).order_by("next_poll_at", "id")[:limit]
        )
        return [stage_record(r) for r in rows]

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
        WorkflowLog.objects.using(self.using).create(
            created_at=now,
            run_id=run_id,
            stage_id=stage_pk,
            level=level,
            message=message,
            metadata=dict(metadata) if metadata else None,
        )

    def get_logs(self, run_id: str) -> list[LogRecord]:
        return [
            LogRecord(r.id, r.run_id, r.stage_id, r.level, r.message, r.metadata, r.created_at)
            for r in WorkflowLog.objects.using(self.using).filter(run_id=run_id).order_by("id")
        ]

    # -- outbox ---------------------------------------------------------------------------------------------
    def append_events(self, events: Sequence[Mapping[str, Any]], causation_id: str) -> None:
        if not events:
            return
        by_run: dict[str, list[Mapping[str, Any]]] = {}
        for event in events:
            by_run.setdefault(event["workflow_run_id"], []).append(event)
        rows = []
        with transaction.atomic(using=self.using):
            for run_id, items in by_run.items():
                last = self._reserve_sequences(run_id, len(items))
                for offset, event in enumerate(items):
                    rows.append(
                        OutboxEvent(
                            run_id=run_id,
                            sequence=last - len(items) + 1 + offset,
                            event_type=event["type"],
                            payload=dict(event),
                            causation_id=causation_id,
                            occurred_at=datetime.fromisoformat(event["timestamp"]),
                        )
                    )
            OutboxEvent.objects.using(self.using).bulk_create(rows)

    def _reserve_sequences(self, run_id: str, count: int) -> int:
        """Advance the run's event counter by ``count`` and return its new value.

        The UPDATE row-locks the run, so concurrent writers for one run take turns and never collide.
        """
        table = WorkflowRun._meta.db_table
        with connections[self.using].cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET event_seq = event_seq + %s WHERE id = %s RETURNING event_seq",
                [count, run_id],
            )
            row = cursor.fetchone()
        if row is not None:
            return int(row[0])
        # No run row (deleted): fall back to the highest stored sequence.
        if self._pg:
            with connections[self.using].cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [run_id])
        top = OutboxEvent.objects.using(self.using).filter(run_id=run_id).aggregate(m=Max("sequence"))["m"] or 0
        return top + count

    def get_unpublished_events(self, limit: int) -> list[OutboxRecord]:
        rows = (
            OutboxEvent.objects.using(self.using)
            .filter(published_at__isnull=True, dlq_at__isnull=True)
            .order_by("run_id", "sequence")[:limit]
        )
        return [_outbox(r) for r in rows]

    def get_events(self, run_id: str) -> list[OutboxRecord]:
        return [_outbox(r) for r in OutboxEvent.objects.using(self.using).filter(run_id=run_id).order_by("sequence")]

    def mark_events_published(self, ids: Iterable[int], now: datetime) -> None:
        OutboxEvent.objects.using(self.using).filter(pk__in=list(ids)).update(published_at=now)

    def record_event_failure(self, event_id: int, max_retries: int, now: datetime) -> bool:
        qs = OutboxEvent.objects.using(self.using).filter(pk=event_id)
        qs.update(retry_count=F("retry_count") + 1)
        return bool(qs.filter(retry_count__gte=max_retries).update(dlq_at=now))

    def replay_dead_letters(self, limit: int) -> int:
        ids = list(
            OutboxEvent.objects.using(self.using)
            .filter(dlq_at__isnull=False)
            .order_by("run_id", "sequence")
            .values_list("pk", flat=True)[:limit]
        )
        return OutboxEvent.objects.using(self.using).filter(pk__in=ids).update(dlq_at=None, retry_count=0)

    # -- idempotency ----------------------------------------------------------------------------------------
    def acquire_idempotency_key(
        self, key: str, command_type: str, now: datetime, stale_after_seconds: float | None
    ) -> IdempotencyClaim:
        keys = IdempotencyKey.objects.using(self.using)
        try:
            with transaction.atomic(using=self.using):
                keys.create(key=key, command_type=command_type, result=IN_PROGRESS, created_at=now)
            return IdempotencyClaim("acquired")
        except IntegrityError:
            pass
        row = keys.filter(key=key, command_type=command_type).first()
        if row is None:  # released between our insert and read: try once more
            return self.acquire_idempotency_key(key, command_type, now, stale_after_seconds)
        if row.result != IN_PROGRESS:
            return IdempotencyClaim("replay", row.result)
        if stale_after_seconds is not None and now - row.created_at >= timedelta(seconds=stale_after_seconds):
            if keys.filter(pk=row.pk, created_at=row.created_at).update(created_at=now):
                return IdempotencyClaim("acquired")
            row = keys.filter(pk=row.pk).first()
            if row is not None and row.result != IN_PROGRESS:
                return IdempotencyClaim("replay", row.result)
        return IdempotencyClaim("in_progress")

    def complete_idempotency_key(self, key: str, command_type: str, result: Any) -> None:
        IdempotencyKey.objects.using(self.using).filter(key=key, command_type=command_type).update(result=result)

    def release_idempotency_key(self, key: str, command_type: str) -> None:
        IdempotencyKey.objects.using(self.using).filter(key=key, command_type=command_type).delete()

    # -- annotations ----------------------------------------------------------------------------------------
    def append_annotations(self, annotations: Sequence[AnnotationRecord], now: datetime) -> list[AnnotationRecord]:
        written = []
        for a in annotations:
            if (
                a.idempotency_key is not None
                and WorkflowAnnotation.objects.using(self.using)
                .filter(run_id=a.run_id, key=a.key, idempotency_key=a.idempotency_key)
                .exists()
            ):
                continue
            try:
                with transaction.atomic(using=self.using):
                    row = WorkflowAnnotation.objects.using(self.using).create(
                        created_at=now,
                        run_id=a.run_id,
                        stage_id=a.stage_pk,
                        attempt=a.attempt,
                        scope=a.scope,
                        scope_id=a.scope_id,
                        actor_kind=a.actor_kind,
                        actor_id=a.actor_id,
                        actor_version=a.actor_version,
                        key=a.key,
                        value=a.value,
                        payload=a.payload,
                        idempotency_key=a.idempotency_key,
                    )
            except IntegrityError:
                continue
            written.append(_annotation(row))
        return written

    def list_annotations(self, run_id: str, filters: Mapping[str, Any]) -> list[AnnotationRecord]:
        qs = WorkflowAnnotation.objects.using(self.using).filter(run_id=run_id)
        if filters.get("key") is not None:
            qs = qs.filter(key=filters["key"])
        elif filters.get("key_prefix") is not None:
            qs = qs.filter(key__startswith=filters["key_prefix"])
        for name in ("scope", "scope_id", "actor_id", "actor_kind", "attempt"):
            if filters.get(name) is not None:
                qs = qs.filter(**{name: filters[name]})
        if filters.get("since") is not None:
            qs = qs.filter(created_at__gte=filters["since"])
        if filters.get("until") is not None:
            qs = qs.filter(created_at__lte=filters["until"])
        return [_annotation(r) for r in qs.order_by("created_at", "id")[: filters.get("limit") or 1000]]


def _outbox(r: OutboxEvent) -> OutboxRecord:
    return OutboxRecord(
        r.id,
        r.run_id,
        r.sequence,
        r.event_type,
        r.payload,
        r.causation_id,
        r.occurred_at,
        r.published_at,
        r.retry_count,
        r.dlq_at,
    )


def _annotation(r: WorkflowAnnotation) -> AnnotationRecord:
    return AnnotationRecord(
        id=r.id,
        run_id=r.run_id,
        key=r.key,
        value=r.value,
        scope=r.scope,
        scope_id=r.scope_id,
        stage_pk=r.stage_id,
        attempt=r.attempt,
        actor_kind=r.actor_kind,
        actor_id=r.actor_id,
        actor_version=r.actor_version,
        payload=r.payload,
        idempotency_key=r.idempotency_key,
        created_at=r.created_at,
    )
