"""``lease.reapStale``: jobs whose worker stopped heartbeating go back to PENDING for re-delivery."""

from __future__ import annotations

from datetime import timedelta

from ..commands import ReapStaleLeases, ReapStaleResult
from ..kernel import Deps

RESULT = ReapStaleResult


def handle(command: ReapStaleLeases, deps: Deps, causation_id: str) -> ReapStaleResult:
    now = deps.clock.now()
    with deps.persistence.atomic():
        released = deps.jobs.release_stale(now - timedelta(seconds=command.stale_after_seconds), now)
    return ReapStaleResult(len(released))
