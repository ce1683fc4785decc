"""An event sink that keeps what it is given."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class CollectingEventSink:
    """Collects emitted events in ``events``; ``fail_times`` makes the next N emits raise."""

    def __init__(self, max_retries: int = 3) -> None:
        self.events: list[dict[str, Any]] = []
        self.max_retries = max_retries
        self.fail_times = 0

    def emit(self, event: Mapping[str, Any]) -> None:
        if self.fail_times > 0:
            self.fail_times -= 1
            raise RuntimeError("event sink failure (injected)")
        self.events.append(dict(event))

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]
