"""ORM persistence of what lets a map's items settle without the run lock (a part of
:class:`~.persistence.OrmPersistence`): the shared run read, the conditional write of an item's record, and
the map's counter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import connections, transaction

from ..core.errors import WorkflowEngineError
from ..core.fanout import counted
from ..kernel.records import RunRecord, StageRecord, Status
from ..models import WorkflowRun, WorkflowStage
from .rows import RUN_FIELDS, STAGE_FIELDS
from .sqlite import guard_public_methods
from .statements import count_map_items, q, update_open_stage
from .store import OrmStore, returned_row, update_values


@guard_public_methods
class OrmMaps(OrmStore):
    def share_run(self, run_id: str) -> RunRecord | None:
        rows = self._select(WorkflowRun, f"{q('id')} = %s", [run_id], share=True)
        return RunRecord(**{name: rows[0][name] for name in RUN_FIELDS}) if rows else None

    def update_open_stage(
        self,
        run_id: str,
        stage_id: str,
        fields: Mapping[str, Any],
        now: datetime,
        statuses: Sequence[str],
        stage_pk: str | None = None,
    ) -> StageRecord | None:
        values = update_values("StageRecord", STAGE_FIELDS, fields, now)
        connection = connections[self.using]
        sql, params = update_open_stage(connection, WorkflowStage, values, run_id, stage_id, statuses, stage_pk)
        row = returned_row(self.using, WorkflowStage, sql, params)
        return None if row is None else StageRecord(**{name: row[name] for name in STAGE_FIELDS})

    def count_map_items(
        self, run_id: str, stage_id: str, done: int, failed: Sequence[int], now: datetime
    ) -> StageRecord | None:
        connection = connections[self.using]
        if self._dialect.json_rows:  # PostgreSQL: one statement
            sql, params = count_map_items(connection, WorkflowStage, run_id, stage_id, done, failed, now)
            row = returned_row(self.using, WorkflowStage, sql, params)
            return None if row is None else StageRecord(**{name: row[name] for name in STAGE_FIELDS})
        # SQLite: the transaction holds the database's write lock, so a read-modify-write is atomic.
        with transaction.atomic(using=self.using):
            current = self._stages().select_for_update().filter(run_id=run_id, stage_id=stage_id).first()
            if current is None or current.status != Status.RUNNING:
                return None
            values = update_values(
                "StageRecord", STAGE_FIELDS, {"metrics": counted(current.metrics, done, failed)}, now
            )
            missing = WorkflowEngineError(f"Stage record {current.pk!r} does not exist.")
            self._versioned_update(WorkflowStage, current.pk, values, None, missing, current_only=True)
        return self._current_stage(run_id, stage_id)

    def _current_stage(self, run_id: str, stage_id: str) -> StageRecord | None:
        rows = self._select(
            WorkflowStage,
            f"{q('run_id')} = %s AND {q('stage_id')} = %s AND {q('superseded_at')} IS NULL",
            [run_id, stage_id],
        )
        return StageRecord(**{name: rows[0][name] for name in STAGE_FIELDS}) if rows else None
