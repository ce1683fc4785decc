"""In-memory side of a map's items settling without the run lock (mixed into
:class:`.persistence.InMemoryPersistence`): one process, so the store's lock makes each call atomic."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ...core.fanout import counted
from ..records import RunRecord, StageRecord, Status


class InMemoryMaps:
    store: Any
    _shared: Any

    def share_run(self, run_id: str) -> RunRecord | None:
        with self._shared.lock:
            run = self.store.runs.get(run_id)
            return copy.deepcopy(run) if run else None

    def _current(self, run_id: str, stage_id: str) -> StageRecord | None:
        return next(
            (
                s
                for s in self.store.stages.values()
                if s.run_id == run_id and s.stage_id == stage_id and s.superseded_at is None
            ),
            None,
        )

    def update_open_stage(
        self,
        run_id: str,
        stage_id: str,
        fields: Mapping[str, Any],
        now: datetime,
        statuses: Sequence[str],
        stage_pk: str | None = None,
    ) -> StageRecord | None:
        with self._shared.lock:
            stage = self._current(run_id, stage_id)
            if stage is None or (stage_pk is not None and stage.id != stage_pk) or stage.status not in statuses:
                return None
            for name, value in fields.items():
                if not hasattr(stage, name) or name == "id":
                    raise AttributeError(f"StageRecord has no writable field {name!r}")
                setattr(stage, name, copy.deepcopy(value))
            stage.version += 1
            stage.updated_at = now
            return copy.deepcopy(stage)

    def count_map_items(
        self, run_id: str, stage_id: str, done: int, failed: Sequence[int], now: datetime
    ) -> StageRecord | None:
        with self._shared.lock:
            stage = self._current(run_id, stage_id)
            if stage is None or stage.status != Status.RUNNING:
                return None
            stage.metrics = counted(stage.metrics, done, failed)
            stage.version += 1
            stage.updated_at = now
            return copy.deepcopy(stage)
