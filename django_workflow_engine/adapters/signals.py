"""ORM side of signals (mixed into :class:`~.persistence.OrmPersistence`)."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime

from django.db import transaction

from ..kernel.records import SignalRecord
from ..models import WorkflowSignal

SIGNAL_FIELDS = [f.name for f in fields(SignalRecord)]


def signal_record(row: WorkflowSignal) -> SignalRecord:
    return SignalRecord(**{name: getattr(row, name) for name in SIGNAL_FIELDS})


class OrmSignals:
    using: str

    def add_signal(self, signal: SignalRecord) -> None:
        WorkflowSignal.objects.using(self.using).create(**{name: getattr(signal, name) for name in SIGNAL_FIELDS})

    def find_signal(self, run_id: str, idempotency_key: str) -> SignalRecord | None:
        row = WorkflowSignal.objects.using(self.using).filter(run_id=run_id, idempotency_key=idempotency_key).first()
        return signal_record(row) if row is not None else None

    def take_signal(self, run_id: str, name: str, stage_pk: str, now: datetime) -> SignalRecord | None:
        with transaction.atomic(using=self.using):
            row = (
                WorkflowSignal.objects.using(self.using)
                .select_for_update(skip_locked=True)
                .filter(run_id=run_id, name=name, consumed_by__isnull=True)
                .order_by("received_at", "id")
                .first()
            )
            if row is None:
                return None
            row.consumed_at, row.consumed_by = now, stage_pk
            row.save(update_fields=["consumed_at", "consumed_by"])
            return signal_record(row)
