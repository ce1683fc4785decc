"""``run.signal``: deliver a signal to a run (one transaction, run row locked).

A stage SUSPENDED waiting for the signal completes with its payload and the run advances in the same transaction
(the next group's jobs ring the doorbell on commit); a stage not reached yet finds the signal when it waits.
Two signals for one waiting stage serialize on the run lock: the first completes it, the second is refused.
"""

from __future__ import annotations

from ...core.errors import (
    InvalidArgument,
    InvalidInput,
    InvalidRunState,
    RunNotFound,
    SignalNotExpected,
    WorkflowDefinitionError,
)
from ...core.jsonsafe import JSONValueError, check_json_value
from ...core.signal import check_signal_name
from ..commands import SignalResult, SignalRun
from ..flow import Handled
from ..kernel import Deps
from ..records import TERMINAL_RUN_STATUSES, SignalRecord, StageRecord, Status
from ..signals import (
    batch_waiter,
    check_actor,
    complete_waiting,
    received_event,
    signal_names,
    validate_payload,
    waiting_stage,
    wake_batch,
)
from ..validation import check_idempotency_key, check_run_id
from .run_transition import advance

RESULT = SignalResult


def handle(command: SignalRun, deps: Deps) -> Handled:
    run_id = check_run_id(command.run_id)
    try:
        name = check_signal_name(command.name, "engine.signal")
    except WorkflowDefinitionError as exc:
        raise InvalidArgument("name", str(exc)) from None
    if command.idempotency_key is not None:
        check_idempotency_key(command.idempotency_key)
    actor = check_actor(command.actor)
    persistence = deps.persistence
    run = persistence.lock_run(run_id)
    if run is None:
        raise RunNotFound(run_id)
    if command.idempotency_key is not None:
        earlier = persistence.get_signal_by_key(run.id, command.idempotency_key)
        if earlier is not None:
            stage_id = _stage_id(deps, run.workflow_id, earlier.name)
            result = SignalResult(earlier.id, run.id, earlier.name, stage_id, earlier.consumed_by is not None, True)
            return Handled(result)
    workflow = deps.registry.get(run.workflow_id)
    stage_def = waiting_stage(workflow, name)
    if stage_def is None and run.status not in TERMINAL_RUN_STATUSES:
        batch = batch_waiter(deps, run.id, name)
        if batch is not None:
            return _wake(deps, command, run.id, name, actor, batch)
    if stage_def is None:
        known = ", ".join(repr(n) for n in signal_names(workflow)) or "none"
        raise SignalNotExpected(
            run.id, name, f"no stage of workflow {run.workflow_id!r} waits for it (signals it waits for: {known})."
        )
    if run.status in TERMINAL_RUN_STATUSES:
        raise InvalidRunState(run.id, str(run.status), "signal", [Status.PENDING, Status.RUNNING])
    payload = validate_payload(stage_def, name, command.payload)
    record = persistence.get_stage(run.id, stage_def.id)
    if record is not None and record.status not in (Status.PENDING, Status.RUNNING, Status.SUSPENDED):
        raise SignalNotExpected(
            run.id, name, f"stage {stage_def.id!r} is {record.status}: it already received its signal."
        )
    now = deps.clock.now()
    signal = persistence.create_signal(
        SignalRecord(0, run.id, name, payload, actor=actor, idempotency_key=command.idempotency_key), now
    )
    events = [received_event(run.id, signal, now, stage_def.id)]
    if record is None or record.status != Status.SUSPENDED:
        return Handled(SignalResult(signal.id, run.id, name, stage_def.id, False), events)
    events += complete_waiting(deps, run, record, signal, now)
    advanced = advance(deps, run, now)
    return Handled(
        SignalResult(signal.id, run.id, name, stage_def.id, True),
        events + advanced.events,
        after_commit=advanced.after_commit,
    )


def _wake(deps: Deps, command: SignalRun, run_id: str, name: str, actor: str | None, stage: StageRecord) -> Handled:
    """An async-batch stage that also waits for this signal: its next poll sees the payload."""
    try:
        check_json_value(command.payload)
    except JSONValueError as exc:
        raise InvalidInput(f"Invalid payload for signal {name!r} of stage {stage.stage_id!r}: {exc}") from None
    now = deps.clock.now()
    signal = deps.persistence.create_signal(
        SignalRecord(0, run_id, name, command.payload, actor=actor, idempotency_key=command.idempotency_key), now
    )
    wake_batch(deps, stage, signal, now)
    return Handled(
        SignalResult(signal.id, run_id, name, stage.stage_id, True),
        [received_event(run_id, signal, now, stage.stage_id)],
    )


def _stage_id(deps: Deps, workflow_id: str, name: str) -> str:
    stage = waiting_stage(deps.registry.get(workflow_id), name)
    return stage.id if stage is not None else ""
