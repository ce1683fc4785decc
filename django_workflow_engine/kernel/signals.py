"""Signals in the kernel: which stage a signal is for, its payload checked, and a waiting stage completed with it.

Both ways a signal meets its stage run with the run row locked: ``run.signal`` completes a SUSPENDED stage at
once, and ``job.execute`` hands a stage that is about to wait a signal that came before it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..core.errors import InvalidArgument, InvalidInput, format_validation_errors
from ..core.jsonsafe import JSONValueError, check_json_value
from .events import SIGNAL_RECEIVED, STAGE_COMPLETED, STAGE_RESUMED, event
from .flow import store_output
from .records import RunRecord, SignalRecord, StageRecord, Status

if TYPE_CHECKING:
    from ..core.workflow import Stage, Workflow
    from .deps import Deps

MAX_ACTOR_LENGTH = 200


def waiting_stage(workflow: Workflow | None, name: str) -> Stage | None:
    """The stage of ``workflow`` that waits for signal ``name``."""
    if workflow is None:
        return None
    for stage in workflow.stages():
        if stage.signal == name:
            return stage
    return None


def signal_names(workflow: Workflow | None) -> list[str]:
    return sorted({s.signal for s in workflow.stages() if s.signal}) if workflow is not None else []


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
    from .outcome import BATCH_SIGNAL_KEY

    for stage in deps.persistence.get_stages(run_id):
        state = stage.suspended_state if isinstance(stage.suspended_state, dict) else {}
        if stage.status == Status.SUSPENDED and state.get(BATCH_SIGNAL_KEY) == name:
            return stage
    return None


def wake_batch(deps: Deps, stage: StageRecord, signal: SignalRecord, now: datetime) -> None:
    """Hand the payload to a waiting async-batch stage (``state["signal"]``) and make its next poll due now."""
    state = dict(stage.suspended_state or {})
    state["signal"] = signal.payload
    deps.persistence.update_stage(
        stage.id, {"suspended_state": state, "next_poll_at": now}, now, expected_version=stage.version
    )
    deps.persistence.consume_signal(signal.id, stage.id, now)
