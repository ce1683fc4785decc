"""Signals delivered to a run, as a signal stage sees them (:class:`StageSignals`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .records import RunRecord

if TYPE_CHECKING:
    from .deps import Deps


class StageSignals:
    """The inbox of one stage record: takes (consumes) the oldest signal of a name delivered to its run."""

    def __init__(self, deps: Deps, run: RunRecord, stage_pk: str):
        self.deps = deps
        self.run = run
        self.stage_pk = stage_pk

    def take(self, name: str) -> tuple[bool, Any]:
        signal = self.deps.persistence.take_signal(self.run.id, name, self.stage_pk, self.deps.clock.now())
        return (True, signal.payload) if signal is not None else (False, None)
