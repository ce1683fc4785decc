"""``job.execute``: run one stage of one run in three steps.

1. Phase 1 transaction (run row locked): a run that is no longer RUNNING makes this a ghost job; else the
   stage becomes RUNNING (visible at once) and ``stage:started`` is recorded. An eager continuation
   (``ExecuteJob.started``) skips it: the previous stage's outcome transaction did it.
3. The stage code runs with **no transaction open**, so a slow model call holds no locks.
4. Phase 3 transaction: lock the run row, re-check it is RUNNING (else discard the result: ghost), then
   write the outcome, annotations and events together.

The run row is not updated by this command, so parallel siblings do not contend on its version.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta
from typing import Any

from ...core.batch import Suspend
from ...core.context import StageContext, StageStorage
from ...core.errors import RunNotFound, WorkflowNotFound
from ...core.ids import new_id
from ..commands import ExecuteJob, ExecuteResult
from ..events import (
    ANNOTATION_CREATED,
    STAGE_COMPLETED,
    STAGE_FAILED,
    STAGE_PROGRESS,
    STAGE_SUSPENDED,
    WORKFLOW_SUSPENDED,
    event,
)
from ..executor import Outcome, execute_stage, parse_config
from ..flow import (
    MISSING,
    MissingGroupOutput,
    add_ai_metrics,
    load_output,
    stage_input,
    stage_started_event,
    store_output,
    workflow_context,
)
from ..kernel import Deps
from ..logcontext import log_extra
from ..records import AnnotationRecord, RunRecord, StageRecord, Status
from . import run_transition as transition

RESULT = ExecuteResult
logger = logging.getLogger("django_workflow_engine.kernel")


class _Ghost(Exception):
    def __init__(self, status: str):
        self.status = status


def ghost(run_id: str, status: str, when: str) -> ExecuteResult:
    return ExecuteResult(
        "failed", error=f"Run {run_id} is {status} {when}; ghost job result discarded.", ghost=True, retryable=False
    )


def handle(command: ExecuteJob, deps: Deps, causation_id: str) -> ExecuteResult:
    persistence = deps.persistence
    workflow = deps.registry.get(command.workflow_id)
    if workflow is None:
        raise WorkflowNotFound(command.workflow_id, deps.registry.ids())
    stage_def = workflow.stage(command.stage_id)
    # Phase 1 (one transaction, run row locked): check the run, read its stages, mark this stage RUNNING
    # and record stage:started. It commits before any user code runs.
    if command.started is not None:
        # An eager continuation: the previous stage's outcome transaction already did phase 1 for us.
        run, stages, record = command.started.run, command.started.stages, command.started.record
        started = record.started_at or deps.clock.now()
    else:
        started = deps.clock.now()
        with persistence.atomic(defer_writes=True):
            run = persistence.lock_run(command.run_id)
            if run is None:
                raise RunNotFound(command.run_id)
            if run.status != Status.RUNNING:
                return ghost(run.id, str(run.status), "before execution")
            stages = persistence.get_stages(run.id)
            record = next((s for s in stages if s.stage_id == command.stage_id), None)
            if record is not None and record.status == Status.COMPLETED:
                # a duplicate delivery of a finished stage: never executed twice
                output = load_output(deps, record)
                return ExecuteResult("completed", output=None if output is MISSING else output)
            if record is None:
                record = persistence.create_stages(
                    [
                        StageRecord(
                            id=new_id(),
                            run_id=run.id,
                            stage_id=stage_def.id,
                            stage_name=stage_def.name,
                            stage_number=workflow.stage_number(stage_def.id),
                            execution_group=workflow.group_of(stage_def.id),
                            status=Status.RUNNING,
                            started_at=started,
                            config=dict(run.config.get(stage_def.id) or {}),
                        )
                    ],
                    started,
                )[0]
            else:
                persistence.update_stage(record.id, {"status": Status.RUNNING, "started_at": started}, started)
            persistence.append_events([stage_started_event(record, started)], causation_id)
    context = workflow_context(deps, stages)

    # Phase 2: user code, no transaction open.
    observer = deps.options.observer

    def log_sink(level: str, message: str, meta: dict[str, Any]) -> None:
        if observer is not None:
            observer.stage_log(run.id, stage_def.id, level, message, meta)
        try:
            persistence.create_log(run.id, record.id, level, message, meta or None, deps.clock.now())
        except Exception:
            logger.exception(
                "could not store a log line of stage %s",
                stage_def.id,
                extra=log_extra(run.id, run.workflow_id, stage_def.id),
            )

    ctx: StageContext | None = None
    try:
        raw_input = stage_input(workflow, run, record.execution_group, context, stage_def.id)
        ctx = StageContext(
            input=stage_def.parse_input(raw_input),
            workflow_context=context,
            stage_number=record.stage_number,
            resume_state=record.suspended_state,
            run_id=run.id,
            workflow_id=workflow.id,
            stage_id=stage_def.id,
            stage_name=stage_def.name,
            stage_record_id=record.id,
            attempt=record.attempt,
            config=parse_config(
                stage_def, record.config if record.config is not None else run.config.get(stage_def.id)
            ),
            storage=StageStorage(deps.blobs, run.workflow_type, run.id, stage_def.id),
            log_sink=log_sink,
            ai_factory=deps.ai_factory,
        )
    except MissingGroupOutput as exc:
        outcome = Outcome("failed", error=str(exc), retryable=False)
    except Exception as exc:
        from ..executor import NON_RETRYABLE
        from ..flow import error_message

        outcome = Outcome("failed", error=error_message(exc), retryable=not isinstance(exc, NON_RETRYABLE))
    else:
        outcome = execute_stage(stage_def, ctx)

    # Phase 3: record the outcome, unless the run stopped being RUNNING meanwhile.
    finished = deps.clock.now()
    duration_ms = int((finished - started).total_seconds() * 1000)
    output_data = None
    if outcome.kind == "completed":
        try:
            output_data = store_output(deps, run, stage_def.id, outcome.output, outcome.artifacts, record.attempt)
        except Exception as exc:
            from ..flow import error_message

            outcome = Outcome(
                "failed", error=f"Could not store the output of stage {stage_def.id!r}: {error_message(exc)}"
            )
    if getattr(ctx, "ai_usage", None) is not None:  # set by ctx.ai(): AI spend joins the stage's metrics
        spent = add_ai_metrics(record.metrics, ctx)  # added to earlier attempts' spend
        outcome.metrics = {**outcome.metrics, **{k: v for k, v in spent.items() if k.startswith("ai_")}}
    progress = [event(STAGE_PROGRESS, run.id, finished, **p) for p in (ctx.progress_events if ctx is not None else [])]
    annotations = _annotations(ctx, run, record) if ctx is not None else []
    try:
        with persistence.atomic(defer_writes=True):
            locked = persistence.lock_run(run.id)
            if locked is None or locked.status != Status.RUNNING:
                raise _Ghost(str(locked.status) if locked else "deleted")
            result, events, written = _write_outcome(
                deps, run, record, stage_def, outcome, output_data, finished, duration_ms
            )
            if command.job_id is not None and result.outcome in ("completed", "suspended"):
                if result.outcome == "completed":
                    deps.jobs.complete(command.job_id, finished)
                    # Same transaction, run row already locked: the next group is enqueued on this commit.
                    claim_for = command.worker_id
                    if claim_for is not None and command.continue_if is not None and not command.continue_if():
                        claim_for = None
                    # The only stage of its group: no other stage of the run changed since phase 1 read them
                    # (later groups start only from here; cancel and rerun change the locked run row).
                    known = None
                    if len(workflow.group(record.execution_group)) == 1:
                        known = [s for s in stages if s.id != record.id] + [written]
                    advanced = transition.advance(deps, locked, finished, claim_for=claim_for, stages=known)
                    events += advanced.events
                    result = dataclasses.replace(
                        result, transition=advanced.result.action, continuation=advanced.started
                    )
                else:
                    deps.jobs.suspend(command.job_id, datetime.fromisoformat(result.next_poll_at), finished)
                    result = dataclasses.replace(result, transition="noop")
            if annotations:
                persistence.append_annotations([row for row, _ in annotations], finished)
            emitted = [
                event(
                    ANNOTATION_CREATED,
                    run.id,
                    finished,
                    key=a.key,
                    value=a.value,
                    scope=a.scope,
                    scope_id=a.scope_id,
                    attempt=a.attempt,
                )
                for a, wanted in annotations
                if wanted
            ]
            persistence.append_events(progress + events + emitted, causation_id)
    except _Ghost as exc:
        return ghost(run.id, exc.status, "after execution")
    if outcome.kind == "failed":
        log_sink("ERROR", f"Stage {stage_def.id!r} failed: {outcome.error}", {"retryable": outcome.retryable})
    return result


def _write_outcome(
    deps: Deps,
    run: RunRecord,
    record: StageRecord,
    stage_def: Any,
    outcome: Outcome,
    output_data: dict[str, Any] | None,
    now: Any,
    duration_ms: int,
) -> tuple[ExecuteResult, list[dict[str, Any]], StageRecord]:
    """Write the stage outcome; returns the result, its events and the stage record as written."""
    persistence = deps.persistence
    metrics = {**(record.metrics or {}), **outcome.metrics, "duration_ms": duration_ms}
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
        persistence.update_stage(record.id, fields, now)
        written = dataclasses.replace(record, **fields, updated_at=now)
        return (
            ExecuteResult("completed", output=outcome.output),
            [
                event(
                    STAGE_COMPLETED,
                    run.id,
                    now,
                    stage_id=stage_def.id,
                    stage_name=stage_def.name,
                    duration_ms=duration_ms,
                )
            ],
            written,
        )
    if outcome.kind == "suspended":
        suspend: Suspend = outcome.suspend  # type: ignore[assignment]
        interval = suspend.poll_interval_delta
        next_poll_at = suspend.next_poll_at or now + (
            interval or timedelta(seconds=deps.options.suspend_fallback_seconds)
        )
        max_wait_until = now + suspend.max_wait_delta
        persistence.update_stage(
            record.id,
            {
                "status": Status.SUSPENDED,
                "suspended_state": dict(suspend.state),
                "next_poll_at": next_poll_at,
                "poll_interval_ms": int(interval.total_seconds() * 1000),
                "max_wait_until": max_wait_until,
                "metrics": metrics,
            },
            now,
        )
        return (
            ExecuteResult("suspended", next_poll_at=next_poll_at.isoformat()),
            [
                event(
                    STAGE_SUSPENDED,
                    run.id,
                    now,
                    stage_id=stage_def.id,
                    stage_name=stage_def.name,
                    next_poll_at=next_poll_at.isoformat(),
                ),
                event(WORKFLOW_SUSPENDED, run.id, now, stage_id=stage_def.id),
            ],
            record,
        )
    persistence.update_stage(
        record.id,
        {
            "status": Status.FAILED,
            "completed_at": now,
            "duration_ms": duration_ms,
            "error_message": outcome.error,
            "metrics": metrics,
        },
        now,
    )
    return (
        ExecuteResult("failed", error=outcome.error, retryable=outcome.retryable),
        [event(STAGE_FAILED, run.id, now, stage_id=stage_def.id, stage_name=stage_def.name, error=outcome.error)],
        record,
    )


def _annotations(ctx: StageContext, run: RunRecord, record: StageRecord) -> list[tuple[AnnotationRecord, bool]]:
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
