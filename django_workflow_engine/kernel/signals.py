"""Signals in the kernel: which stage a signal is for, its payload checked, and a waiting stage completed with it.

Both ways a signal meets its stage run with the run row locked: ``run.signal`` completes a SUSPENDED signal stage
at once (or wakes an async-batch stage waiting for it), and a job's outcome transaction hands a stage that is about
to wait a signal that came before it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..core.errors import InvalidArgument, InvalidInput, format_validation_errors
from ..core.jsonsafe import JSONValueError, check_json_value
from .events import SIGNAL_RECEIVED, STAGE_COMPLETED, STAGE_RESUMED, event
from .executor import Outcome
from .flow import store_output
from .outcome import BATCH_SIGNAL_KEY
from .records import RunRecord, SignalRecord, StageRecord, Status

if TYPE_CHECKING:
    from ..core.workflow import Stage, Workflow
    from .deps import Deps

MAX_ACTOR_LENGTH = 200
BATCH_PAYLOAD_KEY = "signal"  # in a woken async-batch stage's state: the payload of the signal that woke it


def waiting_stage(workflow: Workflow | None, name: str) -> Stage | None:
    """The stage of ``workflow`` that waits for signal ``name``: a signal stage, or an async-batch stage that
    declares it (``signals=``). A workflow has at most one (checked when it is built)."""
    if workflow is None:
        return None
    for stage in workflow.stages():
        if stage.signal == name or name in stage.signals:
            return stage
    return None


def signal_names(workflow: Workflow | None) -> list[str]:
    if workflow is None:
        return []
    return sorted({n for s in workflow.stages() for n in (s.signal, *s.signals) if n})


def check_actor(actor: Any) -> str | None:
    if actor is None:
        return None
    if not isinstance(actor, str) or not actor or len(actor) > MAX_ACTOR_LENGTH or "\x00" in actor:
        raise InvalidArgument("actor", f"must be a non-empty string of at most {MAX_ACTOR_LENGTH} characters")
    return actor


def validate_payload(stage: Stage, name: str, payload: Any) -> Any:
    """The payload as stored JSON, validated by the stage's output model.

    Raises:
        InvalidInput: naming the signal, the stage and the field that does not validate.
    """
    schema = stage.output
    try:
        data = schema.model_validate(payload).model_dump(mode="json") if schema is not None else payload
        check_json_value(data)
    except ValidationError as exc:
        raise InvalidInput(
            f"Invalid payload for signal {name!r} of stage {stage.id!r}: {format_validation_errors(exc.errors())}",
            exc.errors(),
        ) from None
    except JSONValueError as exc:
        raise InvalidInput(f"Invalid payload for signal {name!r} of stage {stage.id!r}: {exc}") from None
    return data


def complete_waiting(
    deps: Deps, run: RunRecord, stage: StageRecord, signal: SignalRecord, now: datetime
) -> list[dict[str, Any]]:
    """Complete the SUSPENDED ``stage`` with ``signal``'s payload (run row locked by the caller); its events."""
    output_data = store_output(deps, run, stage.stage_id, signal.payload, {}, stage.attempt)
    started = stage.started_at or now
    duration_ms = int((now - started).total_seconds() * 1000)
    deps.persistence.update_stage(
        stage.id,
        {
            "status": Status.COMPLETED,
            "completed_at": now,
            "duration_ms": duration_ms,
            "output_data": output_data,
            "next_poll_at": None,
            "metrics": {**(stage.metrics or {}), "duration_ms": duration_ms},
        },
        now,
        expected_version=stage.version,
    )
    deps.jobs.complete_suspended(run.id, stage.stage_id, now)
    deps.persistence.consume_signal(signal.id, stage.id, now)
    names = {"stage_id": stage.stage_id, "stage_name": stage.stage_name}
    return [
        event(STAGE_RESUMED, run.id, now, **names, signal=signal.name, signal_id=signal.id),
        event(STAGE_COMPLETED, run.id, now, **names, duration_ms=duration_ms),
    ]


def received_event(run_id: str, signal: SignalRecord, now: datetime, stage_id: str) -> dict[str, Any]:
    return event(
        SIGNAL_RECEIVED, run_id, now, signal=signal.name, signal_id=signal.id, stage_id=stage_id, actor=signal.actor
    )


def batch_waiter(deps: Deps, run_id: str, name: str) -> StageRecord | None:
    """The run's SUSPENDED async-batch stage that waits for signal ``name`` (``Suspend(wait_for_signal=...)``)."""
    for stage in deps.persistence.get_stages(run_id):
        if stage.status == Status.SUSPENDED and waits_for(stage, name):
            return stage
    return None


def waits_for(stage: StageRecord, name: str) -> bool:
    state = stage.suspended_state if isinstance(stage.suspended_state, dict) else {}
    return bool(state.get(BATCH_SIGNAL_KEY) == name)


def wake_batch(
    deps: Deps, run_id: str, stage: StageRecord, signal: SignalRecord, now: datetime
) -> list[dict[str, Any]]:
    """Hand the payload to a waiting async-batch stage (``state["signal"]``; the wait is over) and put its job
    back in the queue, so that a worker polls it at once. Its events."""
    state = {k: v for k, v in (stage.suspended_state or {}).items() if k != BATCH_SIGNAL_KEY}
    state[BATCH_PAYLOAD_KEY] = signal.payload
    fields: dict[str, Any] = {"suspended_state": state}
    if not deps.jobs.wake_suspended(run_id, stage.stage_id, now):
        fields["next_poll_at"] = now  # a stage with no job (``job.execute``): the maintenance loop polls it
    deps.persistence.update_stage(stage.id, fields, now, expected_version=stage.version)
    deps.persistence.consume_signal(signal.id, stage.id, now)
    return [resumed_event(run_id, stage, signal, now)]


def resumed_event(run_id: str, stage: StageRecord, signal: SignalRecord, now: datetime) -> dict[str, Any]:
    names = {"stage_id": stage.stage_id, "stage_name": stage.stage_name}
    return event(STAGE_RESUMED, run_id, now, **names, signal=signal.name, signal_id=signal.id)


@dataclass(frozen=True)
class Early:
    """A signal that came before its stage waited, and the outcome it turns the stage's wait into."""

    signal: SignalRecord
    outcome: Outcome
    wake: bool  # an async-batch stage: suspended with the payload, its job woken to poll it at once


def early_signal(deps: Deps, run_id: str, stage_def: Stage, outcome: Outcome, has_job: bool) -> Early | None:
    """For a stage about to wait: the kept signal it waits for, if one came first. A signal stage then completes
    with its payload; an async-batch stage suspends with it in its state and is polled at once."""
    if outcome.kind != "suspended" or outcome.suspend is None:
        return None
    if stage_def.signal is not None:
        early = deps.persistence.next_signal(run_id, stage_def.signal)
        if early is None:
            return None
        return Early(early, Outcome("completed", output=early.payload, metrics=outcome.metrics), wake=False)
    suspend = outcome.suspend
    if not suspend.wait_for_signal:
        return None
    early = deps.persistence.next_signal(run_id, suspend.wait_for_signal)
    if early is None:
        return None
    state = {**suspend.state, BATCH_PAYLOAD_KEY: early.payload}
    now = deps.clock.now()
    answered = dataclasses.replace(suspend, state=state, wait_for_signal=None, next_poll_at=None if has_job else now)
    return Early(early, dataclasses.replace(outcome, suspend=answered), wake=True)


def take_early(
    deps: Deps, record: StageRecord, early: Early, outcome_kind: str, has_job: bool, now: datetime
) -> list[dict[str, Any]]:
    """In the outcome transaction that used ``early``: consume it; a woken async-batch stage's job (suspended by
    then) goes back in the queue, to be polled at once. Its events."""
    if outcome_kind not in ("completed", "suspended"):
        return []  # the stage failed (its output could not be stored): the signal stays for a retry
    deps.persistence.consume_signal(early.signal.id, record.id, now)
    if not (early.wake and outcome_kind == "suspended"):
        return []
    if has_job:
        deps.jobs.wake_suspended(record.run_id, record.stage_id, now)
    return [resumed_event(record.run_id, record, early.signal, now)]
