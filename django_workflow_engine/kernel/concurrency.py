"""Run concurrency limits: admit a run to a slot, or keep it waiting; start waiting runs as slots free.

A run of a workflow with ``max_concurrent_runs`` carries its ``concurrency_key``. RUNNING runs with a key hold
its slots; PENDING runs with a key wait. Every decision is taken under the per-key lock of the persistence
port, inside the caller's transaction, so any number of processes agree. Starting a waiting run enqueues its
first group's jobs in that transaction: the doorbell rings on commit, with no maintenance tick in between.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .records import RunRecord, Status

if TYPE_CHECKING:
    from ..core.workflow import Workflow
    from .deps import Deps


def admit(deps: Deps, workflow: Workflow, run: RunRecord, now: datetime) -> bool:
    """For a new run with a concurrency key, before it is written: lock its key and tell whether it may start
    now (a slot is free and no due run waits before it). ``False``: create it PENDING, it waits. A delayed run
    not due yet is never admitted: it waits PENDING, holding no slot, until it is due (then a slot admits it
    like any waiting run)."""
    assert run.concurrency_key is not None
    if run.scheduled_at is not None and run.scheduled_at > now:
        return False
    deps.persistence.lock_concurrency_key(workflow.id, run.concurrency_key)
    running, waiting = deps.persistence.concurrency_counts(workflow.id, run.concurrency_key, now)
    return running < (workflow.max_concurrent_runs or 0) and waiting == 0


def fill_slots(deps: Deps, workflow: Workflow, key: str, now: datetime) -> list[dict[str, Any]]:
    """Start waiting runs of (``workflow``, ``key``) into its free slots, in priority then FIFO order, inside
    the caller's transaction. Returns the ``workflow:started`` events to append."""
    from .events import WORKFLOW_STARTED, event
    from .flow import prepare_group

    limit = workflow.max_concurrent_runs
    if limit is None:
        return []
    persistence = deps.persistence
    persistence.lock_concurrency_key(workflow.id, key)
    running, waiting = persistence.concurrency_counts(workflow.id, key, now)
    free = min(limit - running, waiting)
    if free <= 0:
        return []
    events = []
    for run in persistence.waiting_runs(workflow.id, key, free, now):
        persistence.update_run(run.id, {"status": Status.RUNNING, "started_at": now}, now)
        run.status, run.started_at = Status.RUNNING, now
        prepare_group(deps, run, workflow, 1, 0, now, existing=[])
        events.append(event(WORKFLOW_STARTED, run.id, now, concurrency_key=key))
    return events


def release(deps: Deps, run: RunRecord, now: datetime, workflow: Workflow | None = None) -> list[dict[str, Any]]:
    """A run left RUNNING (completed, failed, cancelled) in the caller's transaction: hand its slot to the next
    waiting run (:func:`.finished.run_finished` calls it). No statement for a run without a concurrency key."""
    if run.concurrency_key is None:
        return []
    workflow = workflow or deps.registry.get(run.workflow_id)
    if workflow is None:
        return []
    return fill_slots(deps, workflow, run.concurrency_key, now)


def sweep(deps: Deps, now: datetime, limit: int = 100) -> list[tuple[str, str]]:
    """Maintenance: start waiting runs wherever a slot is free (a run created with ``engine.create``, a
    wake-up lost to a crash, a limit raised in a deploy). Each key in its own transaction. Returns the
    (run id, workflow id) of the runs started."""
    started: list[tuple[str, str]] = []
    for workflow_id, key in deps.persistence.waiting_concurrency_keys(limit, now):
        workflow = deps.registry.get(workflow_id)
        if workflow is None:
            continue
        with deps.persistence.atomic():
            events = fill_slots(deps, workflow, key, deps.clock.now())
            if events:
                deps.persistence.append_events(events, f"concurrency:{workflow_id}:{key}")
        started += [(e["workflow_run_id"], workflow_id) for e in events]
    return started


# How soon a job deferred by its stage's ``max_concurrent`` is due again.
STAGE_SLOT_POLL_SECONDS = 1.0


def stage_slot(
    deps: Deps, workflow: Workflow, stage_def: Any, record: Any, now: datetime
) -> tuple[datetime | None, str]:
    """In a stage's begin transaction: ``(None, "")`` if it may start under its ``max_concurrent``, else when
    to try again and why. Admissions to one stage are serialized (an advisory lock on PostgreSQL, the single
    writer on SQLite), and an admitted stage is RUNNING before that transaction commits, so the count never
    misses one."""
    limit = stage_def.max_concurrent
    deps.persistence.lock_stage_limit(workflow.id, stage_def.id)
    running = deps.persistence.running_stage_count(workflow.id, stage_def.id, record.id if record else "")
    if running < limit:
        return None, ""
    reason = f"waiting for a slot of stage {stage_def.id!r}: limit {limit} ({running} running)"
    return now + timedelta(seconds=STAGE_SLOT_POLL_SECONDS), reason
