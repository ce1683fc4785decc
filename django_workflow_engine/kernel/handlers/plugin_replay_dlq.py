"""``plugin.replayDLQ``: give dead-lettered events another chance at the next flush."""

from __future__ import annotations

from ..commands import ReplayDeadLetters, ReplayResult
from ..kernel import Deps

RESULT = ReplayResult


def handle(command: ReplayDeadLetters, deps: Deps, causation_id: str) -> ReplayResult:
    return ReplayResult(deps.persistence.replay_dead_letters(command.max_events, command.event_ids))
