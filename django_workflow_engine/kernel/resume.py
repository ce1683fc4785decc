"""A SUSPENDED async-batch stage woken through the doorbell.

A signal for ``Suspend(wait_for_signal=...)`` puts the stage's job back in the queue (:meth:`JobQueue.wake_suspended`);
the worker that claims it polls the stage at once, as the maintenance loop polls a due one: ``check_completion``
runs with no transaction open, then one transaction (run row locked) writes the result and settles the job, and a
completed stage advances the run there and then (the next group rings the doorbell on commit).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from ..core.batch import CompletionError, NotReady, Ready, as_timedelta
from ..core.stage import run_callable, to_json_output
from .events import STAGE_COMPLETED, STAGE_FAILED, event
from .flow import add_ai_metrics, error_message, store_output
from .handlers.run_transition import advance
from .handlers.stage_poll_suspended import check_context
from .records import RunRecord, StageRecord, StartedStage, Status

if TYPE_CHECKING:
    from ..core.workflow import Stage
    from .deps import Deps


@dataclass(frozen=True)
class Polled:
    """What polling a woken stage did to it and its job (a failed one is settled by the caller)."""

    outcome: Literal["completed", "suspended", "failed", "deferred"]
    error: str | None = None
    next_poll_at: datetime | None = None
    ghost: bool = False
    transition: Literal["advanced", "completed", "failed", "noop"] | None = None
    continuation: StartedStage | None = None


def poll_woken(
    deps: Deps,
    stage_def: Stage,
    run: RunRecord,
    record: StageRecord,
    job_id: str,
    claim_for: str | None,
    causation_id: str,
) -> Polled:
    """Poll the SUSPENDED ``record`` whose job ``job_id`` this worker holds, and settle the job (but a failure)."""
    result, ctx = _check(deps, run, record, stage_def)
    output_data = None
    if isinstance(result, Ready):
        record = dataclasses.replace(record, metrics=add_ai_metrics(record.metrics, ctx))
        try:
            if result.output is None:
                output_data = record.output_data
            else:
                output = to_json_output(stage_def.output, result.output, record.stage_id)
                output_data = store_output(deps, run, record.stage_id, output, {}, record.attempt)
        except Exception as exc:
            result = CompletionError(f"Stage {record.stage_id!r} produced invalid output: {error_message(exc)}")
    persistence = deps.persistence
    now = deps.clock.now()
    with persistence.atomic():
        locked = persistence.lock_run(run.id)
        if locked is None or locked.status != Status.RUNNING:
            status = locked.status if locked is not None else "deleted"
            return Polled("failed", f"Run {run.id} is {status} after the poll; its result is discarded.", ghost=True)
        current = persistence.get_stage(run.id, record.stage_id)
        if current is None or current.id != record.id or current.status != Status.SUSPENDED:
            return _settled_meanwhile(deps, locked, current, record, job_id, claim_for, causation_id, now)
        if current.version != record.version:
            # Another poller wrote the stage meanwhile (its next poll): poll again now, with what it wrote.
            deps.jobs.defer(job_id, now, "polled again: the stage changed during the poll", now)
            return Polled("deferred", "polled again", next_poll_at=now)
        if isinstance(result, Ready):
            return _complete(deps, locked, record, result, output_data, job_id, claim_for, causation_id, now)
        if isinstance(result, CompletionError):
            return _fail(deps, run, record, result.error, causation_id, now)
        if record.max_wait_until is not None and record.max_wait_until <= now:
            deadline = record.max_wait_until.isoformat()
            return _fail(
                deps,
                run,
                record,
                f"Stage {record.stage_id!r} exceeded its max wait (deadline {deadline}).",
                causation_id,
                now,
            )
        fallback = timedelta(milliseconds=record.poll_interval_ms or deps.options.suspend_fallback_seconds * 1000)
        next_poll_at = now + as_timedelta(result.next_check_in, fallback)
        persistence.update_stage(record.id, {"next_poll_at": next_poll_at}, now, expected_version=record.version)
        deps.jobs.suspend(job_id, next_poll_at, now)
    return Polled("suspended", next_poll_at=next_poll_at, transition="noop")


def _check(deps: Deps, run: RunRecord, record: StageRecord, stage_def: Stage) -> tuple[Any, Any]:
    """``check_completion``'s result (an exception or a missing function is a :class:`CompletionError`)."""
    if stage_def.check_completion is None:
        message = f"Stage {record.stage_id!r} cannot be polled: its check_completion is no longer defined."
        return CompletionError(message), None
    ctx = check_context(deps, run, record, stage_def)
    try:
        result = run_callable(stage_def.check_completion, record.suspended_state or {}, ctx)
    except Exception as exc:
        return CompletionError(f"check_completion of stage {record.stage_id!r} raised {error_message(exc)}"), ctx
    if not isinstance(result, Ready | NotReady | CompletionError):
        return NotReady(), ctx
    return result, ctx


def _complete(
    deps: Deps,
    run: RunRecord,
    record: StageRecord,
    result: Ready,
    output_data: Any,
    job_id: str,
    claim_for: str | None,
    causation_id: str,
    now: datetime,
) -> Polled:
    started = record.started_at or now
    duration_ms = int((now - started).total_seconds() * 1000)
    metrics = {**(record.metrics or {}), **dict(result.custom_metrics), "duration_ms": duration_ms}
    fields = {
        "status": Status.COMPLETED,
        "completed_at": now,
        "duration_ms": duration_ms,
        "output_data": output_data,
        "next_poll_at": None,
        "metrics": metrics,
    }
    deps.persistence.update_stage(record.id, fields, now, expected_version=record.version)
    names = {"stage_id": record.stage_id, "stage_name": record.stage_name}
    completed = event(STAGE_COMPLETED, run.id, now, **names, duration_ms=duration_ms)
    deps.jobs.complete(job_id, now)
    advanced = advance(deps, run, now, claim_for=claim_for)
    deps.persistence.append_events([completed, *advanced.events], causation_id)
    return Polled("completed", transition=advanced.result.action, continuation=advanced.started)


def _fail(deps: Deps, run: RunRecord, record: StageRecord, message: str, causation_id: str, now: datetime) -> Polled:
    """The stage FAILED; the caller fails the job for good and transitions the run (which then fails)."""
    fields = {"status": Status.FAILED, "completed_at": now, "error_message": message, "next_poll_at": None}
    deps.persistence.update_stage(record.id, fields, now, expected_version=record.version)
    deps.persistence.create_log(run.id, record.id, "ERROR", message, None, now)
    names = {"stage_id": record.stage_id, "stage_name": record.stage_name}
    deps.persistence.append_events([event(STAGE_FAILED, run.id, now, **names, error=message)], causation_id)
    return Polled("failed", message)


def _settled_meanwhile(
    deps: Deps,
    run: RunRecord,
    current: StageRecord | None,
    record: StageRecord,
    job_id: str,
    claim_for: str | None,
    causation_id: str,
    now: datetime,
) -> Polled:
    """The maintenance loop completed the stage during the poll (its result stands), or a rerun replaced it."""
    if current is not None and current.id == record.id and current.status == Status.COMPLETED:
        deps.jobs.complete(job_id, now)
        advanced = advance(deps, run, now, claim_for=claim_for)
        deps.persistence.append_events(advanced.events, causation_id)
        return Polled("completed", transition=advanced.result.action, continuation=advanced.started)
    status = current.status if current is not None and current.id == record.id else "replaced"
    return Polled("failed", f"Stage {record.stage_id!r} is {status}; the poll's result is discarded.", ghost=True)
