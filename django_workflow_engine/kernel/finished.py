"""What follows a run leaving RUNNING (completed, failed, cancelled, expired), in the transaction that does it."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from .children import wake_parent
from .concurrency import release

if TYPE_CHECKING:
    from ..core.workflow import Workflow
    from .deps import Deps
    from .records import RunRecord


def run_finished(deps: Deps, run: RunRecord, now: datetime, workflow: Workflow | None = None) -> list[dict[str, Any]]:
    """``run`` left RUNNING in the caller's transaction: the parent stage of a child run is polled next, and the
    run's concurrency slot goes to the next waiting run. Returns the events to append (runs started into the
    slot). No statement at all for a run with neither a parent nor a concurrency key."""
    wake_parent(deps, run, now)
    return release(deps, run, now, workflow)
