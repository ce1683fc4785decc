"""``run.expireDeadlines``: fail the unfinished runs whose deadline has passed.

A run past its deadline is FAILED with "deadline exceeded" (code ``DEADLINE_EXCEEDED``): its open stages are
cancelled, its queued and suspended jobs too (suspended stages are no longer polled), and a stage still
executing becomes a ghost whose result is discarded (and whose AI calls are refused, see ``ai/ledger.py``).
Each run is one transaction; a run that finished meanwhile is left alone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..commands import ExpireDeadlines, ExpireDeadlinesResult
from ..events import WORKFLOW_FAILED, event
from ..finished import run_finished
from ..kernel import Deps
from ..records import TERMINAL_RUN_STATUSES, RunRecord, Status

RESULT = ExpireDeadlinesResult
CODE = "DEADLINE_EXCEEDED"


def handle(command: ExpireDeadlines, deps: Deps, causation_id: str) -> ExpireDeadlinesResult:
    persistence = deps.persistence
    now = deps.clock.now()
    failed = 0
    for candidate in persistence.get_runs_past_deadline(now, command.max_runs):
        with persistence.atomic():
            run = persistence.lock_run(candidate.id)
            if run is None or run.status in TERMINAL_RUN_STATUSES or not past_deadline(run, now):
                continue
            persistence.append_events(expire(deps, run, now), causation_id)
            failed += 1
    return ExpireDeadlinesResult(failed=failed)


def past_deadline(run: RunRecord, now: datetime) -> bool:
    return run.deadline_at is not None and run.deadline_at <= now


def expire(deps: Deps, run: RunRecord, now: datetime) -> list[dict[str, Any]]:
    """Inside a transaction, run row locked: fail ``run`` for its deadline; returns the events to append."""
    persistence = deps.persistence
    assert run.deadline_at is not None
    message = f"Run deadline exceeded: it had to finish by {run.deadline_at.isoformat()}."
    persistence.update_run(
        run.id,
        {
            "status": Status.FAILED,
            "completed_at": now,
            "duration_ms": run.elapsed_ms(now),
            "output": {"error": {"code": CODE, "message": message}},
        },
        now,
    )
    persistence.cancel_open_stages(run.id, now)
    deps.jobs.cancel_by_run(run.id, now)
    persistence.create_log(run.id, None, "ERROR", message, {"code": CODE}, now)
    events = [event(WORKFLOW_FAILED, run.id, now, error=message, code=CODE)]
    if run.status == Status.RUNNING:  # a run waiting for a slot held none
        events += run_finished(deps, run, now)
    return events
