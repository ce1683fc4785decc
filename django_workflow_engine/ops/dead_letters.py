"""Dead letters: events that failed their plugins ``max_retries`` times, with the last error, and their replay.

A replayed event gets ``retry_count`` back to 0 and is delivered again, in its run's order, at the next outbox
flush (the maintenance loop's tick); a run's later events wait for it as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..models import OutboxEvent


def dead_letters(*, run_id: str | None = None, limit: int = 100, using: str = "default") -> list[OutboxEvent]:
    """Dead-lettered events, newest first."""
    events = OutboxEvent.objects.using(using).filter(dlq_at__isnull=False)
    if run_id:
        events = events.filter(run_id=run_id)
    return list(events.order_by("-dlq_at", "-id")[:limit])


def replay(kernel: Any, event_ids: Iterable[int] | None = None, *, max_events: int = 1000) -> int:
    """Give dead-lettered events another delivery at the next flush: those of ``event_ids`` (``None``: all, up to
    ``max_events``), through ``kernel`` (``engine.kernel``). Ids that are not dead letters are ignored. Returns
    how many were replayed."""
    from ..kernel import ReplayDeadLetters

    ids = None if event_ids is None else tuple(int(i) for i in event_ids)
    if ids == ():
        return 0
    limit = max_events if ids is None else len(ids)
    result: Any = kernel.dispatch(ReplayDeadLetters(max_events=limit, event_ids=ids))
    return int(result.replayed)
