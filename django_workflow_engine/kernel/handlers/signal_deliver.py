"""``signal.deliver``: a signal for a run, from a person (the admin form), a webhook or a script.

One transaction, run row locked: the payload is validated against the output model of the stage that waits for
the signal, stored as a ``WorkflowSignal``, and, when that stage is SUSPENDED waiting, the stage completes with
it and the run is transitioned at once (its next group is enqueued and the doorbell rings on commit), so a run
waiting days for an answer resumes within milliseconds of it. A signal that arrives before its stage waits is
kept and consumed when the stage gets there. Two signals racing for one waiting stage serialize on the run lock:
one completes the stage, the other is refused because the stage has its answer.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from ...core.errors import InvalidArgument, InvalidInput, InvalidRunState, RunNotFound, format_validation_errors
from ...core.ids import new_id
from ..commands import DeliverSignal, SignalResult
from ..events import SIGNAL_RECEIVED, STAGE_COMPLETED, STAGE_RESUMED, event
from ..flow import Handled, store_output
from ..kernel import Deps
from ..records import TERMINAL_RUN_STATUSES, SignalRecord, Status
from ..validation import check_idempotency_key, check_run_id
from . import run_transition

RESULT = SignalResult


def handle(command: DeliverSignal, deps: Deps) -> Handled:
    persistence = deps.persistence
    if not isinstance(command.name, str) or not command.name or len(command.name) > 100:
        raise InvalidArgument("name", f"must be a signal name of 1-100 characters, got {command.name!r}")
    if command.idempotency_key is not None:
        check_idempotency_key(command.idempotency_key)
    if command.actor is not None and (not isinstance(command.actor, str) or len(command.actor) > 200):
        raise InvalidArgument("actor", "must be a string of at most 200 characters")
    run = persistence.lock_run(check_run_id(command.run_id))
    if run is None:
        raise RunNotFound(command.run_id)
    if command.idempotency_key is not None:
        earlier = persistence.find_signal(run.id, command.idempotency_key)
        if earlier is not None:
            stage = next((s for s in persistence.get_stages(run.id) if s.id == earlier.consumed_by), None)
            return Handled(SignalResult(earlier.id, stage.stage_id if stage else None, duplicate=True))
    if run.status in TERMINAL_RUN_STATUSES:
        raise InvalidRunState(run.id, str(run.status), f"deliver signal {command.name!r} to", ["PENDING", "RUNNING"])
    workflow = deps.registry.get(run.workflow_id)
    waiters = [s for s in workflow.stages() if s.signal == command.name] if workflow is not None else []
    if not waiters:
        names = sorted({s.signal for s in workflow.stages() if s.signal}) if workflow is not None else []
        raise InvalidArgument(
            "name",
            f"no stage of workflow {run.workflow_id!r} waits for signal {command.name!r}"
            + (f"; its stages wait for: {', '.join(names)}" if names else "; it has no signal stage"),
        )
    stage_def = waiters[0]
    try:
        payload = stage_def.output.model_validate(command.payload).model_dump(mode="json")
    except ValidationError as exc:
        raise InvalidInput(
            f"Invalid payload for signal {command.name!r} (stage {stage_def.id!r}): "
            f"{format_validation_errors(exc.errors())}",
            exc.errors(),
        ) from None
    now = deps.clock.now()
    stages = persistence.get_stages(run.id)
    mine = [s for s in stages if s.stage_id in {w.id for w in waiters}]
    waiting = next((s for s in mine if s.status == Status.SUSPENDED), None)
    if waiting is None and mine and all(s.status == Status.COMPLETED for s in mine) and len(mine) == len(waiters):
        raise InvalidRunState(
            run.id, "answered", f"deliver signal {command.name!r} to", ["waiting for it (its stage has completed)"]
        )
    signal = SignalRecord(
        id=new_id(),
        run_id=run.id,
        name=command.name,
        payload=payload,
        received_at=now,
        actor=command.actor,
        idempotency_key=command.idempotency_key,
        consumed_at=now if waiting is not None else None,
        consumed_by=waiting.id if waiting is not None else None,
    )
    persistence.add_signal(signal)
    events: list[dict[str, Any]] = [
        event(SIGNAL_RECEIVED, run.id, now, name=command.name, actor=command.actor, signal_id=signal.id)
    ]
    if waiting is None:
        return Handled(SignalResult(signal.id), events)
    started = waiting.started_at or now
    duration_ms = int((now - started).total_seconds() * 1000)
    fields: dict[str, Any] = {
        "status": Status.COMPLETED,
        "completed_at": now,
        "duration_ms": duration_ms,
        "output_data": store_output(deps, run, waiting.stage_id, payload, {}, waiting.attempt),
        "next_poll_at": None,
        "metrics": {**(waiting.metrics or {}), "duration_ms": duration_ms},
    }
    persistence.update_stage(waiting.id, fields, now)
    deps.jobs.complete_suspended(run.id, waiting.stage_id, now)
    stage_names: dict[str, Any] = {"stage_id": waiting.stage_id, "stage_name": waiting.stage_name}
    events += [
        event(STAGE_RESUMED, run.id, now, **stage_names, signal=command.name),
        event(STAGE_COMPLETED, run.id, now, **stage_names, duration_ms=duration_ms),
    ]
    settled = [s if s.id != waiting.id else replace(s, **fields) for s in stages]
    advanced = run_transition.advance(deps, run, now, stages=settled)
    return Handled(SignalResult(signal.id, waiting.stage_id), events + advanced.events)
