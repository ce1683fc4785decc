"""Plugins: event handlers fed from the outbox (at least once, in per-run order).

    audit = define_plugin(id="audit", on=["workflow:completed"], handle=lambda event: ...)

Add plugins to ``WORKFLOW_ENGINE["EVENT_PLUGINS"]`` (objects or dotted paths). A plugin that raises makes the
whole event undelivered: it is retried at the next flush and dead-lettered after ``max_retries`` failures,
so handlers must be idempotent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .events import EVENT_TYPES


@dataclass(frozen=True)
class Plugin:
    id: str
    on: tuple[str, ...]
    handle: Callable[[dict[str, Any]], Any]
    name: str = ""

    def wants(self, event_type: str) -> bool:
        return "*" in self.on or event_type in self.on


def define_plugin(*, id: str, on: Iterable[str], handle: Callable[[dict[str, Any]], Any], name: str = "") -> Plugin:
    """Define an event plugin.

    Args:
        id: unique plugin id.
        on: event types to receive (e.g. ``["workflow:completed"]``), or ``["*"]`` for all.
        handle: called with each event dict.
        name: human-readable name.

    Raises:
        ValueError: for an unknown event type or a non-callable handler.
    """
    types = tuple(on)
    unknown = [t for t in types if t != "*" and t not in EVENT_TYPES]
    if unknown:
        raise ValueError(
            f"Plugin {id!r} subscribes to unknown event type(s) {unknown}; known: {', '.join(EVENT_TYPES)}."
        )
    if not callable(handle):
        raise ValueError(f"Plugin {id!r}: handle must be callable.")
    return Plugin(id=id, on=types, handle=handle, name=name or id)


class PluginRunner:
    """An event sink that calls every subscribed plugin in order; the first exception propagates."""

    def __init__(self, plugins: Sequence[Plugin], max_retries: int = 3):
        self.plugins = list(plugins)
        self.max_retries = max_retries

    def emit(self, event: Mapping[str, Any]) -> None:
        for plugin in self.plugins:
            if plugin.wants(event["type"]):
                plugin.handle(dict(event))
