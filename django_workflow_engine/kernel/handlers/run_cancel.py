"""``run.cancel``: authoritative cancellation, cascading to stages and queued jobs.

Jobs already RUNNING keep running but become ghosts: ``job.execute`` re-checks the run under its row lock
before writing anything and discards their result.
"""

from __future__ import annotations

from ...core.errors import RunNotFound
from .. import children
from ..commands import CancelResult, CancelRun
from ..events import WORKFLOW_CANCELLED, event
from ..finished import run_finished
from ..flow import Handled
from ..kernel import Deps
from ..records import TERMINAL_RUN_STATUSES, Status
from ..validation import check_reason, check_run_id

RESULT = CancelResult


def handle(command: CancelRun, deps: Deps) -> Handled:
    check_reason(command.reason)
    run = deps.persistence.lock_run(check_run_id(command.run_id))
    if run is None:
        raise RunNotFound(command.run_id)
    if run.status in TERMINAL_RUN_STATUSES:
        return Handled(CancelResult(False))
    now = deps.clock.now()
    fields = {
        "status": Status.CANCELLED,
        "completed_at": now,
        "duration_ms": run.elapsed_ms(now),
    }
    deps.persistence.update_run(run.id, fields, now)
    deps.persistence.cancel_open_stages(run.id, now)
    deps.jobs.cancel_by_run(run.id, now)
    events = [event(WORKFLOW_CANCELLED, run.id, now, reason=command.reason)]
    if run.status == Status.RUNNING:
        events += run_finished(deps, run, now)
    else:  # a waiting run held no slot; its parent stage still wakes
        children.wake_parent(deps, run, now)
    for child in deps.persistence.get_child_runs(parent_run_id=run.id):  # its children go with it
        if child.status not in TERMINAL_RUN_STATUSES:
            events += handle(CancelRun(child.id, reason=f"parent run {run.id} was cancelled"), deps).events
    return Handled(CancelResult(True), events)
