"""ORM persistence of stage records (a part of :class:`~.persistence.OrmPersistence`)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import F, Q

from ..core.errors import StaleVersionError, WorkflowEngineError
from ..kernel.records import (
    StageRecord,
    Status,
)
from ..models import (
    WorkflowStage,
)
from . import batches, deferred
from .rows import STAGE_FIELDS, detached, stage_record
from .sqlite import guard_public_methods
from .statements import json_insert, q
from .store import OrmStore, expect_rows, update_values

_FINISHED_STAGE = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)


@guard_public_methods
class OrmStages(OrmStore):
    """Stage records: create, read, update, supersede, cancel, find the due suspended ones."""

    # -- stages ---------------------------------------------------------------------------------------------
    def wake_suspended_stage(self, stage_pk: str, now: datetime) -> bool:
        return bool(
            self._stages()
            .filter(pk=stage_pk, status=Status.SUSPENDED)
            .update(next_poll_at=now, updated_at=now, version=F("version") + 1)
        )

    def get_stages(self, run_id: str) -> list[StageRecord]:
        read = batches.take_stages(self.using, run_id)
        if read is not None:  # read at the start of the batch this transaction is
            return read
        rows = self._select(
            WorkflowStage,
            f"{q('run_id')} = %s AND {q('superseded_at')} IS NULL",
            [run_id],
            f"{q('execution_group')}, {q('stage_number')}",
        )
        return [StageRecord(**{name: row[name] for name in STAGE_FIELDS}) for row in rows]

    def get_stage(self, run_id: str, stage_id: str) -> StageRecord | None:
        # Hand-written like get_stages: a map's items each read their own record and their map's.
        return next(iter(self.get_stages_named(run_id, [stage_id])), None)

    def get_stages_named(self, run_id: str, stage_ids: Sequence[str]) -> list[StageRecord]:
        if not stage_ids:
            return []
        names = ", ".join(["%s"] * len(stage_ids))
        where = f"{q('run_id')} = %s AND {q('stage_id')} IN ({names}) AND {q('superseded_at')} IS NULL"
        rows = self._select(WorkflowStage, where, [run_id, *stage_ids])
        return [StageRecord(**{name: row[name] for name in STAGE_FIELDS}) for row in rows]

    def get_stage_history(self, run_id: str) -> list[StageRecord]:
        rows = self._history().for_run(run_id).order_by("attempt", "execution_group", "stage_number")
        return [stage_record(r) for r in rows]

    def insert_stages(self, stages: Sequence[StageRecord], now: datetime) -> list[StageRecord]:
        if not stages:
            return []
        datas = self._stage_rows(stages, now)
        if deferred.deferring(self.using):
            # An INSERT that leaves with the transaction's other writes, no read-back.
            sql, params = json_insert(self.using, WorkflowStage, datas)
            error = WorkflowEngineError(f"Could not insert {len(datas)} stage record(s).")
            deferred.defer(self.using, deferred.Write(sql, params, check=expect_rows(len(datas), error)))
            return [StageRecord(**data) for data in datas]
        rows = [WorkflowStage(**data) for data in datas]
        self._stages().bulk_create(rows)
        return [stage_record(r) for r in rows]

    def create_stages(self, stages: Sequence[StageRecord], now: datetime) -> list[StageRecord]:
        if not stages:
            return []
        rows = [WorkflowStage(**data) for data in self._stage_rows(stages, now)]
        with transaction.atomic(using=self.using, savepoint=False):
            # ON CONFLICT DO NOTHING / INSERT OR IGNORE: an existing (run, stage_id) keeps its row untouched.
            self._stages().bulk_create(rows, ignore_conflicts=True)
            wanted = Q()
            for run_id in {s.run_id for s in stages}:
                wanted |= Q(run_id=run_id, stage_id__in=[s.stage_id for s in stages if s.run_id == run_id])
            stored = {(r.run_id, r.stage_id): stage_record(r) for r in self._stages().current().filter(wanted)}
        return [copy.deepcopy(stored[(s.run_id, s.stage_id)]) for s in stages]

    @staticmethod
    def _stage_rows(stages: Sequence[StageRecord], now: datetime) -> list[dict[str, Any]]:
        datas = []
        for stage in stages:
            data = {name: detached(getattr(stage, name)) for name in STAGE_FIELDS}
            data.update(created_at=now, updated_at=now, version=1)
            datas.append(data)
        return datas

    def update_stage(
        self, stage_pk: str, fields: Mapping[str, Any], now: datetime, expected_version: int | None = None
    ) -> int:
        values = update_values("StageRecord", STAGE_FIELDS, fields, now)
        missing = WorkflowEngineError(f"Stage record {stage_pk!r} does not exist.")
        try:
            return self._versioned_update(WorkflowStage, stage_pk, values, expected_version, missing, current_only=True)
        except StaleVersionError:
            if self._history().superseded().filter(pk=stage_pk).exists():
                raise WorkflowEngineError(
                    f"Stage record {stage_pk!r} was superseded by a rerun; it is read-only."
                ) from None
            raise

    def supersede_stages_from_group(
        self, run_id: str, group: int, now: datetime, actor: str | None = None
    ) -> list[StageRecord]:
        with transaction.atomic(using=self.using):
            qs = self._stages().current().for_run(run_id).filter(execution_group__gte=group)
            replaced = [stage_record(r) for r in qs.order_by("execution_group", "stage_number")]
            if replaced:
                pks = [s.id for s in replaced]
                # Logs, AI calls, annotations and artifacts keep pointing at these rows: they are the history.
                self._stages().filter(pk__in=pks).exclude(status__in=_FINISHED_STAGE).update(
                    status=Status.CANCELLED, completed_at=now, next_poll_at=None
                )
                self._stages().filter(pk__in=pks).update(
                    superseded_at=now, superseded_by=actor, updated_at=now, version=F("version") + 1
                )
        return replaced

    def cancel_open_stages(self, run_id: str, now: datetime) -> int:
        return (
            self._stages()
            .for_run(run_id)
            .current()
            .exclude(status__in=_FINISHED_STAGE)
            .update(
                status=Status.CANCELLED, completed_at=now, next_poll_at=None, updated_at=now, version=F("version") + 1
            )
        )

    def get_due_suspended_stages(self, now: datetime, limit: int) -> list[StageRecord]:
        return [stage_record(r) for r in self._stages().suspended_due(now)[:limit]]
