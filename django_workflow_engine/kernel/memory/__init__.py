"""In-memory implementations of every port: the reference semantics, and fast adapters for unit tests.

``InMemoryStore`` holds all rows; :class:`InMemoryPersistence` and :class:`InMemoryJobQueue` share one store
so a transaction covers both, as the ORM adapters share one database. A transaction snapshots the store and
restores it on error; a re-entrant lock makes transactions serial, like SQLite's single writer.
"""

from .blobs import InMemoryBlobStore
from .events import CollectingEventSink
from .job_queue import InMemoryJobQueue
from .persistence import InMemoryPersistence
from .registry import DictRegistry
from .store import InMemoryStore

__all__ = [
    "CollectingEventSink",
    "DictRegistry",
    "InMemoryBlobStore",
    "InMemoryJobQueue",
    "InMemoryPersistence",
    "InMemoryStore",
]
