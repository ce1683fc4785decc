"""``run.rerunFrom``: re-execute a finished run from a stage's execution group on.

Stage records of that group and later ones are deleted (their blobs after commit); earlier groups' records
and outputs are kept and feed the rerun. The rerun group gets ``attempt = previous max + 1``.
"""

from __future__ import annotations

from dataclasses import replace

from ...core.errors import InvalidRunState, RunNotFound, WorkflowNotFound
from ..commands import RerunFrom, RerunResult
from ..events import WORKFLOW_STARTED, event
from ..flow import Handled, attempt_prefix, prepare_group, stage_prefix, sum_metrics
from ..kernel import Deps
from ..records import Status
from ..validation import check_run_id

RESULT = RerunResult
# Its writes after the reads (run update, new stage records and jobs, events) need no answer before commit.
DEFER_WRITES = True


def handle(command: RerunFrom, deps: Deps) -> Handled:
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
    now = deps.clock.now()
    deleted = persistence.delete_stages_from_group(run.id, group)
    kept = [s for s in stages if s.execution_group < group]
    attempt = max((s.attempt for s in deleted), default=0) + 1
    cost, tokens = sum_metrics(kept)
    changes = {
        "status": Status.RUNNING,
        "started_at": now,
        "completed_at": None,
        "duration_ms": None,
        "output": None,
        "total_cost": cost,
        "total_tokens": tokens,
    }
    persistence.update_run(run.id, changes, now)
    # The row is locked since it was read: the update moved its version by exactly one.
    run = replace(run, **changes, updated_at=now, version=run.version + 1)
    # Jobs of the previous generation (a worker that died mid-stage, say) must not run next to the new ones.
    deps.jobs.cancel_by_run(run.id, now, include_running=True)
    # The rerun group's records were just deleted and the run is locked: insert them without a read-back.
    job_ids = prepare_group(deps, run, workflow, group, attempt, now, existing=kept).job_ids
    prefixes = [stage_prefix(run.workflow_type, run.id, s.stage_id) for s in deleted]
    keep = tuple(attempt_prefix(run.workflow_type, run.id, s.stage_id, attempt) for s in deleted)

    def delete_blobs() -> None:
        for prefix in prefixes:
            for key in deps.blobs.list(prefix):
                if key.startswith(keep):
                    continue
                try:
                    deps.blobs.delete(key)
                except Exception:  # noqa: S112  (cleanup is best effort; a leftover blob is harmless)
                    continue

    return Handled(
        RerunResult(run.id, command.stage_id, [s.stage_id for s in deleted], job_ids, run=run),
        [event(WORKFLOW_STARTED, run.id, now, rerun_from=command.stage_id, attempt=attempt)],
        after_commit=delete_blobs,
    )
