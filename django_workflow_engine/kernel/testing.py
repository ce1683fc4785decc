"""Kept so ``from django_workflow_engine.kernel.testing import ...`` written before the move still works.

The in-memory adapters live in :mod:`django_workflow_engine.kernel.memory`, the clocks in
:mod:`django_workflow_engine.kernel.clock`; users import them from :mod:`django_workflow_engine.testing`.
"""

from .clock import FakeClock, SystemClock
from .memory import (
    CollectingEventSink,
    DictRegistry,
    InMemoryBlobStore,
    InMemoryJobQueue,
    InMemoryPersistence,
    InMemoryStore,
)
from .records import IN_PROGRESS

__all__ = [
    "IN_PROGRESS",
    "CollectingEventSink",
    "DictRegistry",
    "FakeClock",
    "InMemoryBlobStore",
    "InMemoryJobQueue",
    "InMemoryPersistence",
    "InMemoryStore",
    "SystemClock",
]
