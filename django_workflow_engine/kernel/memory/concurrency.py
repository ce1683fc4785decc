"""In-memory side of run concurrency limits (mixed into :class:`.persistence.InMemoryPersistence`)."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from ..records import RunRecord, Status


class InMemoryConcurrency:
    store: Any
    _shared: Any

    def lock_concurrency_key(self, workflow_id: str, key: str) -> None:
        return None  # one process: the store's lock serializes every read and write

    def lock_stage_limit(self, workflow_id: str, stage_id: str) -> None:
        return None

    def running_stage_count(self, workflow_id: str, stage_id: str, exclude_id: str) -> int:
        with self._shared.lock:
            runs = self.store.runs
            return sum(
                1
                for s in self.store.stages.values()
                if s.stage_id == stage_id
                and s.status == Status.RUNNING
                and s.superseded_at is None
                and s.id != exclude_id
                and s.run_id in runs
                and runs[s.run_id].workflow_id == workflow_id
                and runs[s.run_id].status == Status.RUNNING
            )

    def _keyed(self, workflow_id: str, key: str) -> list[RunRecord]:
        return [r for r in self.store.runs.values() if r.workflow_id == workflow_id and r.concurrency_key == key]

    def concurrency_counts(self, workflow_id: str, key: str, now: datetime | None = None) -> tuple[int, int]:
        with self._shared.lock:
            runs = self._keyed(workflow_id, key)
            return (
                sum(r.status == Status.RUNNING for r in runs),
                sum(r.status == Status.PENDING and _due(r, now) for r in runs),
            )

    def waiting_runs(self, workflow_id: str, key: str, limit: int, now: datetime | None = None) -> list[RunRecord]:
        with self._shared.lock:
            runs = [r for r in self._keyed(workflow_id, key) if r.status == Status.PENDING and _due(r, now)]
            runs.sort(key=lambda r: (-r.priority, r.created_at, r.id))
            return [copy.deepcopy(r) for r in runs[:limit]]

    def waiting_concurrency_keys(self, limit: int, now: datetime | None = None) -> list[tuple[str, str]]:
        with self._shared.lock:
            keys = {
                (r.workflow_id, r.concurrency_key)
                for r in self.store.runs.values()
                if r.status == Status.PENDING and r.concurrency_key is not None and _due(r, now)
            }
            return sorted(keys)[:limit]


def _due(run: RunRecord, now: datetime | None) -> bool:
    """Whether a waiting run may take a slot at ``now``: a delayed start not due yet holds none and waits none."""
    return now is None or run.scheduled_at is None or run.scheduled_at <= now
