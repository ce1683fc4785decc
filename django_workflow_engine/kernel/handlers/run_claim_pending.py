"""``run.claimPending``: claim PENDING runs (highest priority, oldest first) and enqueue their first group.

Each run is handled in its own transaction, so one broken run (say, its workflow was removed) is marked
FAILED and never blocks the others.
"""

from __future__ import annotations

import logging

from ...core.errors import WorkflowNotFound
from .. import concurrency
from ..commands import ClaimedRun, ClaimPendingRuns, ClaimResult
from ..events import WORKFLOW_FAILED, WORKFLOW_STARTED, event
from ..flow import error_message, prepare_group
from ..kernel import Deps
from ..logcontext import log_extra
from ..records import RunRecord, Status

RESULT = ClaimResult
logger = logging.getLogger("django_workflow_engine.kernel")


def _fail(deps: Deps, run: RunRecord, code: str, message: str, worker_id: str, causation_id: str) -> None:
    now = deps.clock.now()
    with deps.persistence.atomic():
        deps.persistence.update_run(
            run.id,
            {
                "status": Status.FAILED,
                "completed_at": now,
                "output": {"error": {"code": code, "message": message, "worker_id": worker_id}},
            },
            now,
        )
        deps.persistence.create_log(run.id, None, "ERROR", message, {"code": code}, now)
        deps.persistence.append_events([event(WORKFLOW_FAILED, run.id, now, error=message)], causation_id)


def handle(command: ClaimPendingRuns, deps: Deps, causation_id: str) -> ClaimResult:
    claimed: list[ClaimedRun] = []
    for _ in range(max(0, command.max_claims)):
        outcome: ClaimedRun | None = None
        run = None
        try:
            with deps.persistence.atomic():
                now = deps.clock.now()
                run = deps.persistence.claim_next_pending_run(now)
                if run is None:
                    break
                workflow = deps.registry.get(run.workflow_id)
                if workflow is None:
                    raise WorkflowNotFound(run.workflow_id, deps.registry.ids())
                job_ids = prepare_group(deps, run, workflow, 1, 0, now).job_ids
                deps.persistence.append_events([event(WORKFLOW_STARTED, run.id, now)], causation_id)
                outcome = ClaimedRun(run.id, run.workflow_id, job_ids)
        except WorkflowNotFound as exc:
            # The claim rolled back with the error; mark the run failed on its own so it is not retried forever.
            _fail(deps, run, "WORKFLOW_NOT_FOUND", str(exc), command.worker_id, causation_id)  # type: ignore[arg-type]
            outcome = ClaimedRun(run.id, run.workflow_id, [])  # type: ignore[union-attr]
        except Exception as exc:
            if run is None:
                raise
            logger.exception("claiming run %s failed", run.id, extra=log_extra(run.id, run.workflow_id))
            try:
                _fail(deps, run, "CLAIM_FAILED", error_message(exc), command.worker_id, causation_id)
            except Exception:
                logger.exception(
                    "could not mark run %s failed after a claim error", run.id, extra=log_extra(run.id, run.workflow_id)
                )
            outcome = ClaimedRun(run.id, run.workflow_id, [])
        if outcome is not None:
            claimed.append(outcome)
    # Runs waiting for a concurrency slot are not claimed above: they start here if a slot is free.
    claimed += [
        ClaimedRun(run_id, workflow_id, []) for run_id, workflow_id in concurrency.sweep(deps, deps.clock.now())
    ]
    return ClaimResult(claimed)
