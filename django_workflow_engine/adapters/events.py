"""The default event sink: a Django signal, then the plugins configured in ``WORKFLOW_ENGINE``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..signals import workflow_event


class SignalEventSink:
    """Sends :data:`~django_workflow_engine.signals.workflow_event` for every event, then calls each plugin
    subscribed to the event type. Any exception means "not delivered": the outbox retries the whole event,
    so receivers and plugins must be idempotent."""

    def __init__(self, plugins: Sequence[Any] = (), max_retries: int = 3):
        self.plugins = list(plugins)
        self.max_retries = max_retries

    def emit(self, event: Mapping[str, Any]) -> None:
        for _receiver, response in workflow_event.send_robust(sender=event["type"], event=dict(event)):
            if isinstance(response, Exception):
                raise response
        for plugin in self.plugins:
            if plugin.wants(event["type"]):
                plugin.handle(dict(event))
