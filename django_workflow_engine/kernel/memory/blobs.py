"""In-memory :class:`~django_workflow_engine.kernel.ports.BlobStore`."""

from __future__ import annotations

import copy
import threading
from typing import Any

from ...core.errors import BlobNotFound


class InMemoryBlobStore:
    """JSON blobs in a dict (values are deep-copied in and out, like a JSON round trip)."""

    def __init__(self) -> None:
        self.blobs: dict[str, Any] = {}
        self._lock = threading.Lock()

    def put(self, key: str, data: Any) -> None:
        with self._lock:
            self.blobs[key] = copy.deepcopy(data)

    def get(self, key: str) -> Any:
        with self._lock:
            if key not in self.blobs:
                raise BlobNotFound(key)
            return copy.deepcopy(self.blobs[key])

    def has(self, key: str) -> bool:
        with self._lock:
            return key in self.blobs

    def delete(self, key: str) -> None:
        with self._lock:
            self.blobs.pop(key, None)

    def list(self, prefix: str) -> list[str]:
        with self._lock:
            return sorted(k for k in self.blobs if k.startswith(prefix))
