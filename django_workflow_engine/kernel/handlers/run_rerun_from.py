"""``run.rerunFrom``: re-execute a finished run from a stage's execution group on.

The current stage records of that group and later ones are superseded, not deleted: they stay as the run's
history (read-only, with their error, logs, AI calls and outputs) and new records of generation
``attempt = previous max + 1`` run in their place. Earlier groups' records and outputs feed the rerun. The
run's ``total_cost``/``total_tokens`` keep what earlier generations spent, and ``started_at`` stays the first
start.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ...core.concurrency import ConcurrencyLimitReached
from ...core.errors import InvalidRunState, RunNotFound, ValidationFailed, WorkflowNotFound
from ...core.fanout import split_item
from .. import concurrency
from ..commands import RerunFrom, RerunResult
from ..events import WORKFLOW_STARTED, event
from ..fanout import rerun_item
from ..flow import Handled, group_jobs, prepare_group
from ..kernel import Deps
from ..records import Status
from ..validation import check_run_id

RESULT = RerunResult
ACTOR_MAX_CHARS = 200  # WorkflowStage.superseded_by


def check_actor(actor: object) -> None:
    """``actor`` is ``None`` or printable text of at most ``ACTOR_MAX_CHARS`` characters."""
    if actor is None:
        return
    if not isinstance(actor, str) or not actor or "\x00" in actor or len(actor) > ACTOR_MAX_CHARS:
        raise ValidationFailed(
            f"Invalid rerun actor {actor!r:.60}: 'actor' must be a non-empty string of at most "
            f"{ACTOR_MAX_CHARS} characters without NUL bytes (a username), or None."
        )


def handle(command: RerunFrom, deps: Deps) -> Handled:
    check_actor(command.actor)
    persistence = deps.persistence
    run = persistence.lock_run(check_run_id(command.run_id))
    if run is None:
        raise RunNotFound(command.run_id)
    if run.status not in (Status.COMPLETED, Status.FAILED):
        raise InvalidRunState(run.id, str(run.status), "rerun", ["COMPLETED", "FAILED"])
    workflow = deps.registry.get(run.workflow_id)
    if workflow is None:
        raise WorkflowNotFound(run.workflow_id, deps.registry.ids())
    group = workflow.group_of(command.stage_id)  # raises StageNotFound
    stages = persistence.get_stages(run.id)
    if group > 1:
        done = {s.stage_id for s in stages if s.execution_group == group - 1 and s.status == Status.COMPLETED}
        missing = [s.id for s in workflow.group(group - 1) if s.id not in done]
        if missing:
            raise InvalidRunState(
                run.id,
                str(run.status),
                f"rerun from {command.stage_id!r} (previous stages have not completed: {', '.join(missing)})",
                ["COMPLETED", "FAILED"],
            )
    key, limit = run.concurrency_key, workflow.max_concurrent_runs
    now = deps.clock.now()
    if key is not None and limit is not None and not concurrency.admit(deps, workflow, run, now):
        raise ConcurrencyLimitReached(run.id, workflow.id, key, limit)  # before anything is written
    item = split_item(command.stage_id)[1] is not None  # one item of a map: docs/fan-out.md
    again: list = []
    if item:
        replaced, again = rerun_item(deps, run, workflow, stages, command.stage_id, now, command.actor)
    else:
        replaced = persistence.supersede_stages_from_group(run.id, group, now, command.actor)
    kept = [s for s in stages if s.execution_group < group]
    attempt = max((s.attempt for s in replaced), default=0) + 1
    # What earlier generations spent stays in total_cost/total_tokens, and started_at stays the first start.
    changes: dict[str, Any] = {
        "status": Status.RUNNING,
        "completed_at": None,
        "duration_ms": None,
        "output": None,
        **({} if run.started_at is not None else {"started_at": now}),
    }
    persistence.update_run(run.id, changes, now)
    # The row is locked since it was read: the update moved its version by exactly one.
    run = replace(run, **changes, updated_at=now, version=run.version + 1)
    # Jobs of the previous generation (a worker that died mid-stage, say) must not run next to the new ones.
    deps.jobs.cancel_by_run(run.id, now, include_running=True)
    # The rerun group's live records were just superseded and the run is locked: insert the new generation
    # without a read-back.
    if item:
        job_ids = deps.jobs.enqueue(group_jobs(deps, run, workflow, again[1:]), now)
    else:
        job_ids = prepare_group(deps, run, workflow, group, attempt, now, existing=kept).job_ids
    details = {"rerun_from": command.stage_id, "attempt": attempt}
    if command.actor:
        details["actor"] = command.actor
    return Handled(
        RerunResult(run.id, command.stage_id, [s.stage_id for s in replaced], job_ids, run=run),
        [event(WORKFLOW_STARTED, run.id, now, **details)],
    )
