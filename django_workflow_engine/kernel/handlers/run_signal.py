"""``run.signal``: deliver a signal to a run (one transaction, run row locked).

A signal stage SUSPENDED waiting for the signal completes with its payload and the run advances in the same
transaction (the next group's jobs ring the doorbell on commit); an async-batch stage waiting for it
(``Suspend(wait_for_signal=...)``) gets the payload in its state and its job back in the queue, so a worker polls it
at once. A stage not reached yet finds the signal when it waits. One signal per wait: two signals for one stage
serialize on the run lock; the first is taken, the second is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    BATCH_PAYLOAD_KEY,
    batch_waiter,
    check_actor,
    complete_waiting,
    received_event,
    signal_names,
    validate_payload,
    waiting_stage,
    waits_for,
    wake_batch,
)
from ..validation import check_idempotency_key, check_run_id
from .run_transition import advance

if TYPE_CHECKING:
    from ...core.workflow import Stage

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
            stage_id = _stage_id(deps, run.id, run.workflow_id, earlier)
            result = SignalResult(earlier.id, run.id, earlier.name, stage_id, earlier.consumed_by is not None, True)
            return Handled(result)
    workflow = deps.registry.get(run.workflow_id)
    stage_def = waiting_stage(workflow, name)
    if stage_def is None and run.status not in TERMINAL_RUN_STATUSES:
        batch = batch_waiter(deps, run.id, name)  # a name only its Suspend(wait_for_signal=...) gives
        if batch is not None:
            return _wake(deps, command, run.id, name, actor, batch)
    if stage_def is None:
        known = ", ".join(repr(n) for n in signal_names(workflow)) or "none"
        why = f"no stage of workflow {run.workflow_id!r} waits for it (signals it waits for: {known})."
        if workflow is not None and any(s.mode == "async-batch" and not s.signal for s in workflow.stages()):
            why += (
                " An async-batch stage receives a signal sent before its Suspend(wait_for_signal=...) only if it "
                "declares the name: define_async_batch_stage(..., signals=[...])."
            )
        raise SignalNotExpected(run.id, name, why)
    if run.status in TERMINAL_RUN_STATUSES:
        raise InvalidRunState(run.id, str(run.status), "signal", [Status.PENDING, Status.RUNNING])
    record = persistence.get_stage(run.id, stage_def.id)
    if stage_def.signal != name:
        return _batch(deps, command, run.id, name, actor, stage_def, record)
    payload = validate_payload(stage_def, name, command.payload)
    if record is not None and record.status not in (Status.PENDING, Status.RUNNING, Status.SUSPENDED):
        raise SignalNotExpected(
            run.id, name, f"stage {stage_def.id!r} is {record.status}: it already received its signal."
        )
    if record is None or record.status != Status.SUSPENDED:
        _refuse_second_early(deps, run.id, name, stage_def)
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


def _batch(
    deps: Deps,
    command: SignalRun,
    run_id: str,
    name: str,
    actor: str | None,
    stage_def: Stage,
    record: StageRecord | None,
) -> Handled:
    """An async-batch stage that declares the signal: woken if it waits for it, else the signal is kept for it."""
    if record is not None and record.status == Status.SUSPENDED and waits_for(record, name):
        return _wake(deps, command, run_id, name, actor, record)
    if record is not None and record.status not in (Status.PENDING, Status.RUNNING):
        waiting = record.status == Status.SUSPENDED and BATCH_PAYLOAD_KEY not in (record.suspended_state or {})
        why = "it is not waiting for it" if waiting else "it already received its signal"
        raise SignalNotExpected(run_id, name, f"stage {stage_def.id!r} is {record.status}: {why}.")
    payload = _json_payload(command.payload, name, stage_def.id)
    _refuse_second_early(deps, run_id, name, stage_def)
    now = deps.clock.now()
    signal = deps.persistence.create_signal(
        SignalRecord(0, run_id, name, payload, actor=actor, idempotency_key=command.idempotency_key), now
    )
    return Handled(
        SignalResult(signal.id, run_id, name, stage_def.id, False), [received_event(run_id, signal, now, stage_def.id)]
    )


def _refuse_second_early(deps: Deps, run_id: str, name: str, stage_def: Stage) -> None:
    """One signal per wait: a second one before the stage waits would never be consumed."""
    kept = deps.persistence.next_signal(run_id, name)
    if kept is not None:
        raise SignalNotExpected(
            run_id,
            name,
            f"a signal for stage {stage_def.id!r} is already kept (signal {kept.id}), to be consumed when it waits.",
        )


def _wake(deps: Deps, command: SignalRun, run_id: str, name: str, actor: str | None, stage: StageRecord) -> Handled:
    """An async-batch stage waiting for this signal: the payload goes in its state, and a worker polls it now."""
    payload = _json_payload(command.payload, name, stage.stage_id)
    now = deps.clock.now()
    signal = deps.persistence.create_signal(
        SignalRecord(0, run_id, name, payload, actor=actor, idempotency_key=command.idempotency_key), now
    )
    events = [received_event(run_id, signal, now, stage.stage_id), *wake_batch(deps, run_id, stage, signal, now)]
    return Handled(SignalResult(signal.id, run_id, name, stage.stage_id, True), events)


def _json_payload(payload: Any, name: str, stage_id: str) -> Any:
    try:
        check_json_value(payload)
    except JSONValueError as exc:
        raise InvalidInput(f"Invalid payload for signal {name!r} of stage {stage_id!r}: {exc}") from None
    return payload


def _stage_id(deps: Deps, run_id: str, workflow_id: str, signal: SignalRecord) -> str:
    if signal.consumed_by is not None:
        for record in deps.persistence.get_stages(run_id):
            if record.id == signal.consumed_by:
                return record.stage_id
    stage = waiting_stage(deps.registry.get(workflow_id), signal.name)
    return stage.id if stage is not None else ""
