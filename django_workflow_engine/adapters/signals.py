"""ORM side of signals (mixed into :class:`~.persistence.OrmPersistence`): the ``WorkflowSignal`` rows."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from ..kernel.records import SignalRecord
from ..models import WorkflowSignal


def _record(row: WorkflowSignal) -> SignalRecord:
    return SignalRecord(
        id=row.pk,
        run_id=row.run_id,
        name=row.name,
        payload=row.payload,
        actor=row.actor,
        idempotency_key=row.idempotency_key,
        received_at=row.received_at,
        consumed_by=row.consumed_by_id,
        consumed_at=row.consumed_at,
    )


class OrmSignals:
    using: str

    def _signals(self) -> Any:
        return WorkflowSignal._default_manager.using(self.using)

    def create_signal(self, signal: SignalRecord, now: datetime) -> SignalRecord:
        row = self._signals().create(
            run_id=signal.run_id,
            name=signal.name,
            payload=copy.deepcopy(signal.payload),
            actor=signal.actor,
            idempotency_key=signal.idempotency_key,
            received_at=now,
            consumed_by_id=signal.consumed_by,
            consumed_at=signal.consumed_at,
        )
        return _record(row)

    def get_signal_by_key(self, run_id: str, idempotency_key: str) -> SignalRecord | None:
        row = self._signals().filter(run_id=run_id, idempotency_key=idempotency_key).first()
        return _record(row) if row is not None else None

    def next_signal(self, run_id: str, name: str) -> SignalRecord | None:
        row = (
            self._signals()
            .filter(run_id=run_id, name=name, consumed_by__isnull=True, consumed_at__isnull=True)
            .order_by("received_at", "id")
            .first()
        )
        return _record(row) if row is not None else None

    def consume_signal(self, signal_id: int, stage_pk: str, now: datetime) -> None:
        self._signals().filter(pk=signal_id).update(consumed_by_id=stage_pk, consumed_at=now)

    def get_signals(self, run_id: str) -> list[SignalRecord]:
        return [_record(r) for r in self._signals().filter(run_id=run_id).order_by("received_at", "id")]
