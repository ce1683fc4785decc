"""Child runs: a stage starts runs of other workflows (``ctx.start_child``), sees them (``ctx.children()``),
wakes when one finishes, and takes them down with it when its run is cancelled."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..core.context import ChildRun
from ..core.errors import InvalidArgument
from .commands import CreateRun
from .records import RunRecord

if TYPE_CHECKING:
    from .deps import Deps

MAX_CHILD_KEY = 200


class StageChildren:
    """The children of one stage record (given to its context)."""

    def __init__(self, deps: Deps, run: RunRecord, stage_pk: str):
        self.deps = deps
        self.run = run
        self.stage_pk = stage_pk

    def start(self, workflow_id: str, input: Any, key: str, config: Mapping[str, Any] | None) -> str:
        if len(key) > MAX_CHILD_KEY:
            raise InvalidArgument("key", f"must be at most {MAX_CHILD_KEY} characters, got {len(key)}")
        assert self.deps.dispatch is not None
        result = self.deps.dispatch(
            CreateRun(
                workflow_id=workflow_id,
                input=input,
                config=dict(config) if config is not None else None,
                priority=self.run.priority,
                # One child per (stage record, key), however often the stage's code runs.
                idempotency_key=f"child:{self.stage_pk}:{key}",
                start=True,
                parent_run_id=self.run.id,
                parent_stage_id=self.stage_pk,
                child_key=key,
            )
        )
        return str(result.run_id)

    def list(self) -> list[ChildRun]:
        return [
            ChildRun(r.id, r.workflow_id, r.child_key or "", str(r.status), r.output)
            for r in self.deps.persistence.get_child_runs(parent_stage_id=self.stage_pk)
        ]


def wake_parent(deps: Deps, run: RunRecord, now: datetime) -> None:
    """Inside the transaction that finishes ``run``: a parent stage suspended on its children is polled next."""
    if run.parent_stage_id is not None:
        deps.persistence.wake_suspended_stage(run.parent_stage_id, now)
