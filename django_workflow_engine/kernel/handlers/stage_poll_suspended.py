"""``stage.pollSuspended``: ask due SUSPENDED stages' ``check_completion`` whether their work is done.

``check_completion`` runs with no transaction open; its result is written in a short transaction that
locks the run row and re-checks that the run is still RUNNING and unchanged (a cancel in between wins). The
caller transitions the runs listed in ``resumed_run_ids``.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from typing import Any

from ...core.batch import CompletionError, NotReady, Ready, as_timedelta
from ...core.context import CheckContext, StageStorage
from ...core.stage import run_callable, to_json_output
from ..children import StageChildren
from ..commands import PollResult, PollSuspended
from ..events import STAGE_COMPLETED, STAGE_FAILED, WORKFLOW_FAILED, event
from ..executor import parse_config
from ..finished import run_finished
from ..flow import add_ai_metrics, error_message, store_output
from ..kernel import Deps
from ..logcontext import log_extra
from ..records import RunRecord, StageRecord, Status

RESULT = PollResult
logger = logging.getLogger("django_workflow_engine.kernel")


class _Abort(Exception):
    pass


def handle(command: PollSuspended, deps: Deps, causation_id: str) -> PollResult:
    persistence = deps.persistence
    checked = resumed = failed = 0
    resumed_ids: list[str] = []
    for stage in persistence.get_due_suspended_stages(deps.clock.now(), command.max_checks):
        checked += 1
        run = persistence.get_run(stage.run_id)
        if run is None:
            continue
        if run.status != Status.RUNNING:
            _cancel_stage(deps, stage)
            continue
        workflow = deps.registry.get(run.workflow_id)
        stage_def = (
            workflow.stage(stage.stage_id) if workflow is not None and workflow.has_stage(stage.stage_id) else None
        )
        if stage_def is None or stage_def.check_completion is None:
            reason = (
                f"Stage {stage.stage_id!r} cannot be polled: its workflow or check_completion is no longer defined."
            )
            if _fail(deps, run, stage, reason, causation_id):
                failed += 1
            continue
        if not _claim_poll(deps, stage):
            continue  # another poller took this stage
        ctx = check_context(deps, run, stage, stage_def)
        try:
            result: Any = run_callable(stage_def.check_completion, stage.suspended_state or {}, ctx)
        except Exception as exc:
            if _fail(
                deps,
                run,
                stage,
                f"check_completion of stage {stage.stage_id!r} raised {error_message(exc)}",
                causation_id,
            ):
                failed += 1
            continue
        now = deps.clock.now()
        if isinstance(result, CompletionError):
            if _fail(deps, run, stage, result.error, causation_id):
                failed += 1
        elif isinstance(result, Ready):
            # AI spend of this check (e.g. recording a provider batch's results) joins the stage's metrics.
            stage = dataclasses.replace(stage, metrics=add_ai_metrics(stage.metrics, ctx))
            if _complete(deps, run, stage, stage_def, result, causation_id):
                resumed += 1
                resumed_ids.append(run.id)
                deps.jobs.complete_suspended(run.id, stage.stage_id, deps.clock.now())
        elif stage.max_wait_until is not None and stage.max_wait_until <= now:
            message = (
                f"Stage {stage.stage_id!r} exceeded its max wait (deadline {stage.max_wait_until.isoformat()}) "
                "while suspended."
            )
            if _fail(deps, run, stage, message, causation_id):
                failed += 1
        else:
            fallback = timedelta(milliseconds=stage.poll_interval_ms or deps.options.suspend_fallback_seconds * 1000)
            delay = as_timedelta(result.next_check_in, fallback) if isinstance(result, NotReady) else fallback
            _guarded(
                deps,
                run,
                lambda s=stage, d=delay, n=now: persistence.update_stage(
                    s.id, {"next_poll_at": n + d}, n, expected_version=s.version
                ),
            )
    return PollResult(checked, resumed, failed, resumed_ids)


def _claim_poll(deps: Deps, stage: StageRecord) -> bool:
    """Push the stage's next poll out by its interval, version-guarded: of two pollers, one calls
    ``check_completion``; if it crashes, the stage is simply polled again later."""
    from ...core.errors import StaleVersionError

    now = deps.clock.now()
    interval = timedelta(milliseconds=stage.poll_interval_ms or deps.options.suspend_fallback_seconds * 1000)
    try:
        with deps.persistence.atomic():
            stage.version = deps.persistence.update_stage(
                stage.id, {"next_poll_at": now + interval}, now, expected_version=stage.version
            )
    except StaleVersionError:
        return False
    return True


def check_context(deps: Deps, run: RunRecord, stage: StageRecord, stage_def: Any) -> CheckContext:
    def log_sink(level: str, message: str, meta: dict[str, Any]) -> None:
        try:
            deps.persistence.create_log(run.id, stage.id, level, message, meta or None, deps.clock.now())
        except Exception:
            logger.exception(
                "could not store a log line of stage %s",
                stage.stage_id,
                extra=log_extra(run.id, run.workflow_id, stage.stage_id),
            )

    return CheckContext(
        run_id=run.id,
        workflow_id=run.workflow_id,
        stage_id=stage.stage_id,
        stage_name=stage.stage_name,
        stage_record_id=stage.id,
        attempt=stage.attempt,
        config=parse_config(stage_def, stage.config),
        storage=StageStorage(deps.blobs, run.workflow_type, run.id, stage.stage_id),
        log_sink=log_sink,
        ai_factory=deps.ai_factory,
        children=StageChildren(deps, run, stage.id),
    )


def _guarded(deps: Deps, run: RunRecord, write: Any) -> bool:
    """Run ``write`` in a transaction holding the run lock, only if the run is still RUNNING and unchanged."""
    from ...core.errors import StaleVersionError

    try:
        with deps.persistence.atomic():
            locked = deps.persistence.lock_run(run.id)
            if locked is None or locked.status != Status.RUNNING or locked.version != run.version:
                raise _Abort
            write()
    except (_Abort, StaleVersionError):
        return False
    return True


def _cancel_stage(deps: Deps, stage: StageRecord | None) -> None:
    if stage is None:
        return
    now = deps.clock.now()
    with deps.persistence.atomic():
        current = deps.persistence.get_stage(stage.run_id, stage.stage_id)
        if current is not None and current.status == Status.SUSPENDED:
            deps.persistence.update_stage(
                current.id, {"status": Status.CANCELLED, "completed_at": now, "next_poll_at": None}, now
            )


def _fail(deps: Deps, run: RunRecord, stage: StageRecord, message: str, causation_id: str) -> bool:
    now = deps.clock.now()

    def write() -> None:
        p = deps.persistence
        p.update_stage(
            stage.id,
            {"status": Status.FAILED, "completed_at": now, "error_message": message, "next_poll_at": None},
            now,
            expected_version=stage.version,
        )
        p.update_run(
            run.id,
            {
                "status": Status.FAILED,
                "completed_at": now,
                "duration_ms": run.elapsed_ms(now),
                "output": {"error": {"code": "STAGE_FAILED", "stage_id": stage.stage_id, "message": message}},
            },
            now,
        )
        deps.jobs.cancel_by_run(run.id, now)
        p.create_log(run.id, stage.id, "ERROR", message, None, now)
        p.append_events(
            [
                event(STAGE_FAILED, run.id, now, stage_id=stage.stage_id, stage_name=stage.stage_name, error=message),
                event(WORKFLOW_FAILED, run.id, now, error=message, stage_id=stage.stage_id),
                *run_finished(deps, run, now),  # its slot goes to the next waiting run
            ],
            causation_id,
        )

    ok = _guarded(deps, run, write)
    if not ok:
        _after_abort(deps, run, stage)
    return ok


def _complete(deps: Deps, run: RunRecord, stage: StageRecord, stage_def: Any, result: Ready, causation_id: str) -> bool:
    now = deps.clock.now()
    try:
        output = to_json_output(stage_def.output, result.output, stage.stage_id) if result.output is not None else None
        output_data = (
            store_output(deps, run, stage.stage_id, output, {}, stage.attempt)
            if result.output is not None
            else stage.output_data
        )
    except Exception as exc:
        return (
            _fail(
                deps,
                run,
                stage,
                f"Stage {stage.stage_id!r} produced invalid output: {error_message(exc)}",
                causation_id,
            )
            and False
        )
    started = stage.started_at or now
    duration_ms = int((now - started).total_seconds() * 1000)
    metrics = {**(stage.metrics or {}), **dict(result.custom_metrics), "duration_ms": duration_ms}

    def write() -> None:
        deps.persistence.update_stage(
            stage.id,
            {
                "status": Status.COMPLETED,
                "completed_at": now,
                "duration_ms": duration_ms,
                "output_data": output_data,
                "next_poll_at": None,
                "metrics": metrics,
            },
            now,
            expected_version=stage.version,
        )
        deps.persistence.append_events(
            [
                event(
                    STAGE_COMPLETED,
                    run.id,
                    now,
                    stage_id=stage.stage_id,
                    stage_name=stage.stage_name,
                    duration_ms=duration_ms,
                )
            ],
            causation_id,
        )

    ok = _guarded(deps, run, write)
    if not ok:
        _after_abort(deps, run, stage)
    return ok


def _after_abort(deps: Deps, run: RunRecord, stage: StageRecord) -> None:
    current = deps.persistence.get_run(run.id)
    if current is not None and current.status == Status.CANCELLED:
        _cancel_stage(deps, stage)
