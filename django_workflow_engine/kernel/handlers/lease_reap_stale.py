"""``lease.reapStale``: jobs whose worker stopped heartbeating go back to PENDING for re-delivery."""

from __future__ import annotations

from datetime import timedelta

from ..commands import ReapStaleLeases, ReapStaleResult
from ..kernel import Deps
from ..outcome import fail_stage_and_run
from ..records import TERMINAL_RUN_STATUSES

RESULT = ReapStaleResult


def handle(command: ReapStaleLeases, deps: Deps, causation_id: str) -> ReapStaleResult:
    now = deps.clock.now()
    with deps.persistence.atomic():
        released = deps.jobs.release_stale(now - timedelta(seconds=command.stale_after_seconds), now)
        # A job whose worker died on every attempt (say, the stage exhausts memory) must not be redelivered
        # forever: once it has used its attempts, it fails the stage and the run.
        for job in released:
            run = deps.persistence.get_run(job.run_id)
            if run is None or run.status in TERMINAL_RUN_STATUSES:
                # The run finished (or was cancelled) while this job's worker was gone: nothing to redeliver.
                deps.jobs.cancel_by_run(job.run_id, now)
                continue
            if job.attempt >= job.max_attempts:
                message = f"Stage {job.stage_id!r} lost its worker on all {job.attempt} attempts (lease expired)."
                # Failed as it stands: taking it first would count one more attempt than were made.
                deps.jobs.fail(job.id, message, None, now)
                fail_stage_and_run(deps, job.run_id, job.stage_id, message, now)
    return ReapStaleResult(len(released))
