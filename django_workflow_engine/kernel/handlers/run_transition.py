"""``run.transition``: after a stage settles, start the next group, complete the run, or fail it.

The run row is locked for the whole transaction, so concurrent transitions of one run serialize and
exactly one of them acts; the version-guarded update is a second line of defence for adapters without locks.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from ...core.errors import StaleVersionError
from ...core.fanout import MapInputError
from .. import fanout
from ..commands import TransitionResult, TransitionRun
from ..events import WORKFLOW_COMPLETED, WORKFLOW_FAILED, WORKFLOW_STARTED, event
from ..finished import run_finished
from ..flow import (
    Handled,
    MissingGroupOutput,
    group_output,
    prepare_group,
    start_pending_sibling,
    sum_metrics,
    workflow_context,
)
from ..kernel import Deps
from ..records import ACTIVE_STAGE_STATUSES, TERMINAL_RUN_STATUSES, RunRecord, StageRecord, Status

if TYPE_CHECKING:
    from ...core.workflow import Workflow

RESULT = TransitionResult
NOOP = Handled(TransitionResult("noop"))


def handle(command: TransitionRun, deps: Deps) -> Handled:
    run = deps.persistence.lock_run(command.run_id)
    if run is None:
        return NOOP
    return advance(deps, run, deps.clock.now())


def advance(
    deps: Deps,
    run: RunRecord,
    now: datetime,
    claim_for: str | None = None,
    stages: list[StageRecord] | None = None,
) -> Handled:
    """The transition itself, for a run whose row the caller has locked in the current transaction.

    ``claim_for``: a worker id; when the next group starts, its first stage is started for that worker
    (``Handled.started``), which executes it next without a queue round trip; while the current group is
    still running, a sibling stage no worker has claimed yet is started for it instead. ``stages``: the run's stage
    records as they are now, when the caller knows them (else they are read)."""
    persistence = deps.persistence
    if run.status in TERMINAL_RUN_STATUSES or run.status == Status.PENDING:
        return NOOP
    workflow = deps.registry.get(run.workflow_id)
    if workflow is None:
        return NOOP
    if stages is None:
        stages = persistence.get_stages(run.id)
    mapped: list[dict] = []
    if workflow.maps:
        settled = fanout.items_failed(deps, workflow, run, stages, now)
        if settled.events:
            mapped = settled.events
            stages = persistence.get_stages(run.id)

    def claim(fields: dict) -> bool:
        try:
            persistence.update_run(run.id, fields, now, expected_version=run.version)
        except StaleVersionError:
            return False
        return True

    if not stages:
        if not claim({}):
            return NOOP
        job_ids = prepare_group(deps, run, workflow, 1, 0, now).job_ids
        return Handled(TransitionResult("advanced", 1, job_ids), [event(WORKFLOW_STARTED, run.id, now)])

    if any(s.status in ACTIVE_STAGE_STATUSES for s in stages):
        # A map's items are started by its join (kernel/fanout.py), not as siblings: most have no job yet.
        own = [s for s in stages if s.item_index is None]
        sibling = start_pending_sibling(deps, run, own, claim_for, now) if claim_for is not None else None
        if sibling is None:
            return Handled(TransitionResult("noop"), mapped) if mapped else NOOP
        return Handled(TransitionResult("noop"), mapped + sibling.events, started=sibling.started)
    handled = _advance(deps, run, workflow, stages, now, claim_for)
    if mapped:
        handled.events[:0] = mapped
    return handled


def _advance(
    deps: Deps, run: RunRecord, workflow: Workflow, stages: list[StageRecord], now: datetime, claim_for: str | None
) -> Handled:
    """No stage of the run is active: fail it, start its next group, or complete it."""
    persistence = deps.persistence

    def claim(fields: dict) -> bool:
        try:
            persistence.update_run(run.id, fields, now, expected_version=run.version)
        except StaleVersionError:
            return False
        return True

    # A map's item that failed for good is settled by its map (kernel/fanout.py): the map fails, or goes on.
    failed = [s for s in stages if s.status == Status.FAILED and s.item_index is None]
    if failed:
        jobs = deps.jobs.jobs_for_run(run.id)
        retrying = {
            j.stage_id for j in jobs if j.status == Status.RUNNING or (j.status == Status.PENDING and j.attempt > 0)
        }
        terminal = [s for s in failed if s.stage_id not in retrying]
        if not terminal:
            return NOOP
        first = terminal[0]
        message = first.error_message or "Stage failed"
        fields = {
            "status": Status.FAILED,
            "completed_at": now,
            "duration_ms": run.elapsed_ms(now),
            "output": {"error": {"code": "STAGE_FAILED", "stage_id": first.stage_id, "message": message}},
        }
        if not claim(fields):
            return NOOP
        deps.jobs.cancel_by_run(run.id, now)
        return Handled(
            TransitionResult("failed"),
            [
                event(WORKFLOW_FAILED, run.id, now, error=message, stage_id=first.stage_id),
                *run_finished(deps, run, now, workflow),
            ],
        )

    max_group = max(s.execution_group for s in stages)
    attempt = max(s.attempt for s in stages)
    if workflow.group(max_group + 1):
        # The run row is locked by the caller, so no concurrent transition can get here: no version claim.
        try:
            started = prepare_group(deps, run, workflow, max_group + 1, attempt, now, stages, claim_for)
        except (MapInputError, MissingGroupOutput) as exc:
            return _fail(deps, run, workflow, now, "MAP_INPUT", str(exc), claim)
        if started.finished:  # a map over an empty list: complete already
            persistence.append_events(started.events, f"map:{run.id}")
            return advance(deps, run, now, claim_for)
        return Handled(
            TransitionResult("advanced", max_group + 1, started.job_ids), started.events, started=started.started
        )

    context = workflow_context(deps, stages)
    try:
        output = group_output(workflow, max_group, context)
    except MissingGroupOutput as exc:
        message = f"Execution group {max_group} finished without the output of stage(s) {exc}."
        if not claim(
            {
                "status": Status.FAILED,
                "completed_at": now,
                "output": {"error": {"code": "MISSING_OUTPUT", "message": message}},
            }
        ):
            return NOOP
        return Handled(
            TransitionResult("failed"),
            [event(WORKFLOW_FAILED, run.id, now, error=message), *run_finished(deps, run, now, workflow)],
        )
    cost, tokens = sum_metrics(stages)
    if any(s.attempt for s in stages):
        # Rerun: the run's cost is what every generation spent, the superseded records' included.
        earlier = [s for s in persistence.get_stage_history(run.id) if s.superseded_at is not None]
        earlier_cost, earlier_tokens = sum_metrics(earlier)
        cost, tokens = cost + earlier_cost, tokens + earlier_tokens
    # Wall time since the run first started (a rerun does not move started_at).
    duration = run.elapsed_ms(now)
    fields = {
        "status": Status.COMPLETED,
        "completed_at": now,
        "duration_ms": duration,
        "output": output,
        "total_cost": max(cost, run.total_cost),
        "total_tokens": max(tokens, run.total_tokens),
    }
    if not claim(fields):
        return NOOP
    return Handled(
        TransitionResult("completed"),
        [
            event(
                WORKFLOW_COMPLETED,
                run.id,
                now,
                duration_ms=duration,
                output=output,
                total_cost=str(fields["total_cost"]),
                total_tokens=fields["total_tokens"],
            ),
            *run_finished(deps, run, now, workflow),
        ],
    )


def _fail(
    deps: Deps, run: RunRecord, workflow: Workflow, now: datetime, code: str, message: str, claim: Callable
) -> Handled:
    """The run FAILED with ``{"error": {"code": code, "message": message}}``."""
    fields = {
        "status": Status.FAILED,
        "completed_at": now,
        "duration_ms": run.elapsed_ms(now),
        "output": {"error": {"code": code, "message": message}},
    }
    if not claim(fields):
        return NOOP
    return Handled(
        TransitionResult("failed"),
        [event(WORKFLOW_FAILED, run.id, now, error=message), *run_finished(deps, run, now, workflow)],
    )
