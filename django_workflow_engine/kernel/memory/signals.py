"""In-memory side of signals (mixed into :class:`.persistence.InMemoryPersistence`)."""

from __future__ import annotations

import copy
import dataclasses
from datetime import datetime
from typing import Any

from ..records import SignalRecord


class InMemorySignals:
    store: Any
    _shared: Any

    def add_signal(self, signal: SignalRecord) -> None:
        with self._shared.lock:
            if signal.idempotency_key is not None and any(
                s.run_id == signal.run_id and s.idempotency_key == signal.idempotency_key for s in self.store.signals
            ):
                raise ValueError(f"duplicate signal idempotency key {signal.idempotency_key!r}")
            self.store.signals.append(copy.deepcopy(signal))

    def find_signal(self, run_id: str, idempotency_key: str) -> SignalRecord | None:
        with self._shared.lock:
            found = next(
                (s for s in self.store.signals if s.run_id == run_id and s.idempotency_key == idempotency_key), None
            )
            return copy.deepcopy(found) if found else None

    def take_signal(self, run_id: str, name: str, stage_pk: str, now: datetime) -> SignalRecord | None:
        with self._shared.lock:
            for index, signal in enumerate(self.store.signals):
                if signal.run_id == run_id and signal.name == name and signal.consumed_by is None:
                    taken = dataclasses.replace(signal, consumed_at=now, consumed_by=stage_pk)
                    self.store.signals[index] = taken
                    return copy.deepcopy(taken)
            return None
