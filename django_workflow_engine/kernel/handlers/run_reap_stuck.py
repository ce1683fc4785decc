"""``run.reapStuck``: repair or fail RUNNING runs that show no activity.

A PENDING stage without a live job (its job row or message was lost) gets a fresh job instead of failing the
run. A run waiting on a SUSPENDED stage whose next poll or deadline lies ahead is not stuck, however long
its poll interval.
"""

from __future__ import annotations

from datetime import timedelta

from ...core.errors import StaleVersionError
from ..commands import ReapStuckResult, ReapStuckRuns, TransitionRun
from ..events import WORKFLOW_FAILED, event
from ..finished import run_finished
from ..kernel import Deps
from ..records import LIVE_JOB_STATUSES, NewJob, Status
from . import run_transition as transition_handler

RESULT = ReapStuckResult


def handle(command: ReapStuckRuns, deps: Deps, causation_id: str) -> ReapStuckResult:
    persistence = deps.persistence
    now = deps.clock.now()
    cutoff = now - timedelta(seconds=command.stuck_after_seconds)
    failed = requeued = 0
    for candidate in persistence.get_stuck_runs(cutoff):
        with persistence.atomic():
            run = persistence.lock_run(candidate.id)
            if run is None or run.status != Status.RUNNING or run.version != candidate.version:
                continue
            stages = persistence.get_stages(run.id)
            live = {j.stage_id for j in deps.jobs.jobs_for_run(run.id) if j.status in LIVE_JOB_STATUSES}
            orphans = [s for s in stages if s.status == Status.PENDING and s.stage_id not in live]
            if orphans:
                workflow = deps.registry.get(run.workflow_id)
                deps.jobs.enqueue(
                    [
                        NewJob(
                            run_id=run.id,
                            workflow_id=run.workflow_id,
                            stage_id=s.stage_id,
                            priority=run.priority,
                            max_attempts=(
                                workflow.stage(s.stage_id).max_attempts
                                if workflow is not None and workflow.has_stage(s.stage_id)
                                else None
                            )
                            or deps.options.max_attempts,
                        )
                        for s in orphans
                    ],
                    now,
                )
                # Touch the run so it is not considered stuck again before the new jobs get a chance.
                persistence.update_run(run.id, {}, now)
                requeued += len(orphans)
                continue
            # Every stage settled but the run never advanced (say, a worker died between recording a stage
            # and transitioning the run): advance it now rather than failing it.
            handled = transition_handler.handle(TransitionRun(run.id), deps)
            if handled.result.action != "noop":
                persistence.append_events(handled.events, causation_id)
                requeued += len(handled.result.job_ids)
                continue
            message = f"Run stuck for more than {int(command.stuck_after_seconds)} s with no activity; reaped."
            try:
                persistence.update_run(
                    run.id,
                    {
                        "status": Status.FAILED,
                        "completed_at": now,
                        "output": {
                            "error": {
                                "code": "STUCK_RUN_REAPED",
                                "message": message,
                                "stage_statuses": [{"stage_id": s.stage_id, "status": str(s.status)} for s in stages],
                            }
                        },
                    },
                    now,
                    expected_version=run.version,
                )
            except StaleVersionError:
                continue
            deps.jobs.cancel_by_run(run.id, now)
            persistence.create_log(run.id, None, "ERROR", message, None, now)
            persistence.append_events(
                [
                    event(WORKFLOW_FAILED, run.id, now, error=message, code="STUCK_RUN_REAPED"),
                    *run_finished(deps, run, now),  # its slot goes to the next waiting run
                ],
                causation_id,
            )
            failed += 1
    return ReapStuckResult(failed=failed, requeued=requeued)
