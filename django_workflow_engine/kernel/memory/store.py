"""The rows every in-memory adapter shares, and the lock that makes their transactions serial."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..records import (
    AnnotationRecord,
    JobRecord,
    LogRecord,
    OutboxRecord,
    RunRecord,
    SignalRecord,
    StageRecord,
)


def stamped(value: datetime | None) -> datetime:
    """A stored row's timestamp: the store sets each one on write, so a missing one is a bug, not a state."""
    if value is None:
        raise AssertionError("an in-memory row was stored without its timestamp")
    return value


@dataclass
class Idem:
    result: Any
    created_at: datetime


@dataclass
class InMemoryStore:
    runs: dict[str, RunRecord] = field(default_factory=dict)
    stages: dict[str, StageRecord] = field(default_factory=dict)
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    logs: list[LogRecord] = field(default_factory=list)
    outbox: list[OutboxRecord] = field(default_factory=list)
    idempotency: dict[tuple[str, str], Idem] = field(default_factory=dict)
    annotations: list[AnnotationRecord] = field(default_factory=list)
    signals: list[SignalRecord] = field(default_factory=list)
    counter: int = 0

    def next_int(self) -> int:
        self.counter += 1
        return self.counter


class Shared:
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


_SHARED: dict[int, Shared] = {}
_SHARED_LOCK = threading.Lock()


def shared(store: InMemoryStore) -> Shared:
    with _SHARED_LOCK:
        entry = _SHARED.get(id(store))
        if entry is None or entry.store is not store:
            entry = _SHARED[id(store)] = Shared(store)
        return entry
