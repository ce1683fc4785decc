"""Writing a stage's outcome (inside the caller's transaction): the stage record, its events, annotations."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .events import (
    ANNOTATION_CREATED,
    STAGE_COMPLETED,
    STAGE_FAILED,
    STAGE_SUSPENDED,
    WORKFLOW_FAILED,
    WORKFLOW_SUSPENDED,
    event,
)
from .records import AnnotationRecord, RunRecord, StageRecord, Status

# In an async-batch stage's suspended state: the signal it also waits for (``Suspend(wait_for_signal=...)``).
BATCH_SIGNAL_KEY = "wait_for_signal"

if TYPE_CHECKING:
    from ..core.context import StageContext
    from ..core.workflow import Stage
    from .deps import Deps
    from .executor import Outcome


@dataclass(frozen=True)
class Written:
    """The stage record as written, and the events to append."""

    record: StageRecord
    events: list[dict[str, Any]]


def write_outcome(
    deps: Deps,
    run: RunRecord,
    record: StageRecord,
    stage_def: Stage,
    outcome: Outcome,
    output_data: dict[str, Any] | None,
    now: datetime,
    duration_ms: int,
    open_only: bool = False,
) -> Written | None:
    """Write ``outcome`` on the stage record. ``open_only`` (a map's item, whose run is not locked): only if the
    record is still RUNNING, else nothing is written and ``None`` returned (a cancel, its failed map, a rerun
    or another delivery of the item got there first)."""
    metrics = {**(record.metrics or {}), **outcome.metrics, "duration_ms": duration_ms}
    names = {"stage_id": record.stage_id, "stage_name": stage_def.name}
    fields: dict[str, Any]
    if outcome.kind == "completed":
        fields = {
            "status": Status.COMPLETED,
            "completed_at": now,
            "duration_ms": duration_ms,
            "output_data": output_data,
            "metrics": metrics,
            "error_message": None,
            "next_poll_at": None,
        }
        events = [event(STAGE_COMPLETED, run.id, now, **names, duration_ms=duration_ms)]
    elif outcome.kind == "suspended":
        suspend = outcome.suspend
        assert suspend is not None
        interval = suspend.poll_interval_delta
        fallback = timedelta(seconds=deps.options.suspend_fallback_seconds)
        next_poll_at = suspend.next_poll_at or now + (interval or fallback)
        fields = {
            "status": Status.SUSPENDED,
            "suspended_state": (
                {**suspend.state, BATCH_SIGNAL_KEY: suspend.wait_for_signal}
                if suspend.wait_for_signal
                else dict(suspend.state)
            ),
            "next_poll_at": next_poll_at,
            "poll_interval_ms": int(interval.total_seconds() * 1000),
            "max_wait_until": now + suspend.max_wait_delta,
            "metrics": metrics,
        }
        events = [
            event(STAGE_SUSPENDED, run.id, now, **names, next_poll_at=next_poll_at.isoformat()),
            event(WORKFLOW_SUSPENDED, run.id, now, stage_id=stage_def.id),
        ]
    elif outcome.kind == "deferred":
        # Due again later as the same attempt: the stage waits PENDING, its job carries the reason.
        fields = {"status": Status.PENDING, "metrics": metrics}
        events = []
    else:
        fields = {
            "status": Status.FAILED,
            "completed_at": now,
            "duration_ms": duration_ms,
            "error_message": outcome.error,
            "metrics": metrics,
        }
        events = [event(STAGE_FAILED, run.id, now, **names, error=outcome.error)]
    if not open_only:
        deps.persistence.update_stage(record.id, fields, now)
    elif (
        deps.persistence.update_open_stage(record.run_id, record.stage_id, fields, now, (Status.RUNNING,), record.id)
        is None
    ):
        return None
    return Written(dataclasses.replace(record, **fields, updated_at=now), events)


def buffered_annotations(ctx: StageContext, run: RunRecord, record: StageRecord) -> list[tuple[AnnotationRecord, bool]]:
    """Buffered ``ctx.annotate`` calls as (row, emit_event) pairs."""
    rows = []
    for item in ctx.annotations:
        actor = item.get("actor") or {}
        row = AnnotationRecord(
            id=0,
            run_id=run.id,
            key=item["key"],
            value=item["value"],
            scope="stage",
            scope_id=record.stage_id,
            stage_pk=record.id,
            attempt=record.attempt,
            actor_kind=actor.get("kind"),
            actor_id=actor.get("id"),
            actor_version=actor.get("version"),
            payload=item.get("payload"),
            idempotency_key=item.get("idempotency_key"),
        )
        rows.append((row, bool(item.get("emit_event"))))
    return rows


def annotation_events(rows: list[tuple[AnnotationRecord, bool]], run_id: str, now: datetime) -> list[dict[str, Any]]:
    """``annotation:created`` for each row whose annotation asked for an event."""
    return [
        event(
            ANNOTATION_CREATED,
            run_id,
            now,
            key=a.key,
            value=a.value,
            scope=a.scope,
            scope_id=a.scope_id,
            attempt=a.attempt,
        )
        for a, wanted in rows
        if wanted
    ]


def fail_stage_and_run(deps: Deps, run_id: str, stage_id: str, message: str, now: datetime) -> None:
    """Inside a transaction: mark the stage FAILED and the run FAILED (if RUNNING), with events."""
    persistence = deps.persistence
    run = persistence.lock_run(run_id)
    if run is None or run.status != Status.RUNNING:
        return
    stage = persistence.get_stage(run_id, stage_id)
    events = []
    if stage is not None and stage.status in (Status.PENDING, Status.RUNNING):
        persistence.update_stage(
            stage.id, {"status": Status.FAILED, "completed_at": now, "error_message": message}, now
        )
        events.append(event(STAGE_FAILED, run_id, now, stage_id=stage_id, stage_name=stage.stage_name, error=message))
    persistence.update_run(
        run_id,
        {
            "status": Status.FAILED,
            "completed_at": now,
            "output": {"error": {"code": "STAGE_FAILED", "stage_id": stage_id, "message": message}},
        },
        now,
    )
    deps.jobs.cancel_by_run(run_id, now)
    events.append(event(WORKFLOW_FAILED, run_id, now, error=message, stage_id=stage_id))
    from .finished import run_finished

    events += run_finished(deps, run, now)
    persistence.append_events(events, f"quarantine:{run_id}:{stage_id}")
