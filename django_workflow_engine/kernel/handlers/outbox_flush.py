"""``outbox.flush``: publish unpublished events to the event sink in per-run order, at least once.

After a failed delivery, later events of the same run wait for the next flush so order is preserved; an
event that fails ``max_retries`` times is dead-lettered (and stops blocking its run).
"""

from __future__ import annotations

import logging

from ..commands import FlushOutbox, FlushResult
from ..kernel import Deps
from ..logcontext import log_extra

RESULT = FlushResult
logger = logging.getLogger("django_workflow_engine.outbox")


def handle(command: FlushOutbox, deps: Deps, causation_id: str) -> FlushResult:
    persistence = deps.persistence
    events = persistence.get_unpublished_events(command.max_events)
    max_retries = int(getattr(deps.sink, "max_retries", 3) or 3)
    blocked: set[str] = set()
    published: list[int] = []
    failed = dead = 0
    for row in events:
        if row.run_id in blocked:
            continue
        try:
            deps.sink.emit(row.payload)
        except Exception as exc:
            logger.exception(
                "delivering event %s #%d of run %s failed",
                row.event_type,
                row.sequence,
                row.run_id,
                extra=log_extra(row.run_id),
            )
            blocked.add(row.run_id)
            failed += 1
            error = f"{type(exc).__name__}: {exc}"[:4000]
            if persistence.record_event_failure(row.id, max_retries, deps.clock.now(), error):
                dead += 1
            continue
        published.append(row.id)
    if published:
        persistence.mark_events_published(published, deps.clock.now())
    return FlushResult(published=len(published), failed=failed, dead_lettered=dead)
