"""Executing one job: begin, run the stage code, record the outcome.

1. **Begin** (one transaction, run row locked): a run that is no longer RUNNING makes this a ghost job; else
   the stage becomes RUNNING (visible at once) and ``stage:started`` is recorded. An eager continuation (a
   :class:`StartedStage`) skips it: the transaction that started it did this. A map's item shares the run row
   with the run's other items instead of locking it (begin and record; :mod:`.fanout`).
2. **Run** the stage code with no transaction open, so a slow model call holds no locks.
3. **Record** (one transaction): lock the run row, re-check it is RUNNING (else discard the result: ghost),
   write the outcome, annotations and events, and settle the job: a completed job is completed and its run
   transitioned (starting the next stage for the worker, when asked), a suspended one suspended. A failed job
   is retried with backoff or failed for good after that transaction (:func:`run_job`).

The run row is not updated by begin or run, so parallel siblings do not contend on its version. Hosts call
:func:`run_job`; the ``job.execute`` command (:func:`handle`) runs the same path for a stage with no job.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..core.context import StageContext, StageStorage
from ..core.errors import RunNotFound, StageNotFound, WorkflowNotFound
from ..core.ids import new_id
from . import concurrency, fanout, live, resume, signals
from .children import StageChildren
from .commands import ExecuteJob, ExecuteResult
from .events import STAGE_PROGRESS, event
from .executor import NON_RETRYABLE, Outcome, execute_stage, failure, parse_config
from .flow import (
    MISSING,
    MissingGroupOutput,
    add_ai_metrics,
    error_message,
    load_output,
    stage_input,
    stage_started_event,
    store_output,
    workflow_context,
)
from .handlers import run_expire_deadlines, run_transition
from .job_outcome import Executed, JobOutcome, finish, quarantine
from .logcontext import stage_log_sink
from .outcome import annotation_events, buffered_annotations, write_outcome
from .records import JobRecord, RunRecord, StageRecord, StartedStage, Status

if TYPE_CHECKING:
    from ..core.workflow import Stage, Workflow
    from .deps import Deps
    from .kernel import Kernel

__all__ = ["Executed", "JobOutcome", "Settle", "execute", "finish", "handle", "quarantine", "run_job"]


@dataclass(frozen=True)
class Settle:
    """The job to settle with the stage outcome, and who continues with the run's next stage."""

    job_id: str
    worker_id: str | None = None
    continue_if: Callable[[], bool] | None = None


@dataclass
class _Begun:
    run: RunRecord
    stages: list[StageRecord]
    record: StageRecord
    started: datetime
    woken: bool = False  # a SUSPENDED stage whose job a signal put back in the queue: poll it, do not execute it


class _Ghost(Exception):
    def __init__(self, status: str):
        self.status = status


def _ghost(run_id: str, status: str, when: str) -> Executed:
    error = f"Run {run_id} is {status} {when}; ghost job result discarded."
    return Executed("failed", error=error, ghost=True, retryable=False)


# -- the command ------------------------------------------------------------------------------------------------

RESULT = ExecuteResult


def handle(command: ExecuteJob, deps: Deps, causation_id: str) -> ExecuteResult:
    """``job.execute``: execute one stage of one run that has no claimed job."""
    return execute(deps, command.run_id, command.workflow_id, command.stage_id, causation_id).result()


# -- the path ---------------------------------------------------------------------------------------------------


def execute(
    deps: Deps,
    run_id: str,
    workflow_id: str,
    stage_id: str,
    causation_id: str,
    settle: Settle | None = None,
    started: StartedStage | None = None,
) -> Executed:
    """Begin, run and record one stage; with ``settle``, the job is settled in the outcome transaction."""
    workflow = deps.registry.get(workflow_id)
    if workflow is None:
        raise WorkflowNotFound(workflow_id, deps.registry.ids())
    stage_def = workflow.stage(stage_id)
    if started is not None:
        begun = _Begun(started.run, started.stages, started.record, started.record.started_at or deps.clock.now())
    else:
        begin = _begin(deps, workflow, stage_id, run_id, causation_id, settle)
        if isinstance(begin, Executed):
            return begin
        begun = begin
    if begun.woken and settle is not None:
        poll_for = (settle.job_id, _claim_for(settle))
        polled = resume.poll_woken(deps, stage_def, begun.run, begun.record, *poll_for, causation_id)
        return Executed(**vars(polled), retryable=False)  # a failed poll fails the stage for good
    outcome, ctx = _run_stage(deps, workflow, stage_def, begun)
    return _record(deps, workflow, stage_def, begun, outcome, ctx, causation_id, settle)


def _begin(
    deps: Deps, workflow: Workflow, stage_id: str, run_id: str, causation_id: str, settle: Settle | None
) -> _Begun | Executed:
    """One transaction, run row locked: check the run, read its stages, mark this stage RUNNING and record
    ``stage:started``. It commits before any stage code runs. A map's item reads its own record only."""
    persistence, stage_def, now = deps.persistence, workflow.stage(stage_id), deps.clock.now()
    if stage_id != stage_def.id:  # a map's item: the run row shared, not locked, unless the locked path must decide
        with persistence.atomic():
            shared = fanout.start_item(deps, run_id, stage_id, now)
            if isinstance(shared, str):
                return _ghost(run_id, shared, "before execution")
            if shared is not None:
                persistence.append_events([stage_started_event(shared[1], now)], causation_id)
                return _Begun(shared[0], [shared[1]], shared[1], now)
    with persistence.atomic():
        run = persistence.lock_run(run_id)
        if run is None:
            raise RunNotFound(run_id)
        if run.status != Status.RUNNING:
            return _ghost(run.id, str(run.status), "before execution")
        if run_expire_deadlines.past_deadline(run, now):
            persistence.append_events(run_expire_deadlines.expire(deps, run, now), causation_id)
            return _ghost(run.id, "FAILED (deadline exceeded)", "before execution")
        item = stage_id != stage_def.id  # a map's item: its own record only
        stages = fanout.item_stages(deps, workflow, run.id, stage_id) if item else persistence.get_stages(run.id)
        if item and not stages:
            return _ghost(run.id, "past this item (its map failed)", "before execution")
        record = next((s for s in stages if s.stage_id == stage_id), None)
        if record is not None and record.status == Status.COMPLETED:
            # A duplicate delivery of a finished stage: never executed twice; its job is settled here.
            output = load_output(deps, record)
            transition = None
            if settle is not None:
                deps.jobs.complete(settle.job_id, now)
                advanced = run_transition.advance(deps, run, now)
                persistence.append_events(advanced.events, causation_id)
                transition = advanced.result.action
            return Executed("completed", output=None if output is MISSING else output, transition=transition)
        if record is not None and record.status == Status.SUSPENDED and settle is not None:
            return _Begun(run, stages, record, now, woken=True)
        if stage_def.max_concurrent is not None and settle is not None:
            until, reason = concurrency.stage_slot(deps, workflow, stage_def, record, now)
            if until is not None:
                deps.jobs.defer(settle.job_id, until, reason, now)
                return Executed("deferred", error=reason, next_poll_at=until)
        if record is None:
            new = StageRecord(
                id=new_id(),
                run_id=run.id,
                stage_id=stage_def.id,
                stage_name=stage_def.name,
                stage_number=workflow.stage_number(stage_def.id),
                execution_group=workflow.group_of(stage_def.id),
                status=Status.RUNNING,
                started_at=now,
                config=dict(run.config.get(stage_def.id) or {}),
            )
            record = persistence.create_stages([new], now)[0]
        else:
            persistence.update_stage(record.id, {"status": Status.RUNNING, "started_at": now}, now)
        persistence.append_events([stage_started_event(record, now)], causation_id)
    return _Begun(run, stages, record, now)


def _run_stage(deps: Deps, workflow: Workflow, stage_def: Stage, begun: _Begun) -> tuple[Outcome, StageContext | None]:
    """The stage code, with no transaction open."""
    run, record = begun.run, begun.record
    context = workflow_context(deps, begun.stages)
    try:
        ctx = StageContext(
            input=fanout.item_input(stage_def, record)
            if fanout.is_item(record)
            else stage_def.parse_input(stage_input(workflow, run, record.execution_group, context, stage_def.id)),
            workflow_context=context,
            stage_number=record.stage_number,
            resume_state=record.suspended_state,
            run_id=run.id,
            workflow_id=workflow.id,
            stage_id=record.stage_id,
            stage_name=stage_def.name,
            stage_record_id=record.id,
            attempt=record.attempt,
            config=parse_config(
                stage_def, record.config if record.config is not None else run.config.get(stage_def.id)
            ),
            storage=StageStorage(deps.blobs, run.workflow_type, run.id, record.stage_id),
            log_sink=stage_log_sink(deps, begun.run, begun.record),
            ai_factory=deps.ai_factory,
            run_status=lambda: deps.persistence.get_run_status(run.id),
            children=StageChildren(deps, run, record.id),
        )
    except MissingGroupOutput as exc:
        return Outcome("failed", error=str(exc), retryable=False), None
    except Exception as exc:
        return failure(exc, not isinstance(exc, NON_RETRYABLE) and stage_def.retry.retryable(exc)), None
    run_left = (run.deadline_at - deps.clock.now()).total_seconds() if run.deadline_at is not None else None
    live.started(run.id, record.stage_id, ctx)
    try:
        return execute_stage(stage_def, ctx, stage_timeout(deps, stage_def), run_left), ctx
    finally:
        live.finished(run.id, record.stage_id)


def stage_timeout(deps: Deps, stage_def: Stage) -> float | None:
    return stage_def.timeout if stage_def.timeout is not None else deps.options.stage_timeout_seconds


def _record(
    deps: Deps,
    workflow: Workflow,
    stage_def: Stage,
    begun: _Begun,
    outcome: Outcome,
    ctx: StageContext | None,
    causation_id: str,
    settle: Settle | None,
) -> Executed:
    """One transaction: the outcome, annotations and events, and the job settled, unless the run stopped being
    RUNNING meanwhile."""
    persistence = deps.persistence
    run, record = begun.run, begun.record
    finished = deps.clock.now()
    duration_ms = int((finished - begun.started).total_seconds() * 1000)
    output_data = None
    early = signals.early_signal(deps, run.id, stage_def, outcome, has_job=settle is not None)
    if early is not None:  # a stage about to wait for a signal that came first
        outcome = early.outcome
    if outcome.kind == "completed":
        try:
            output_data = store_output(deps, run, record.stage_id, outcome.output, outcome.artifacts, record.attempt)
        except Exception as exc:
            error = f"Could not store the output of stage {stage_def.id!r}: {error_message(exc)}"
            outcome = Outcome("failed", error=error)
    if ctx is not None and ctx.ai_usage is not None:  # set by ctx.ai(): AI spend joins the stage's metrics
        spent = add_ai_metrics(record.metrics, ctx)  # added to earlier attempts' spend
        outcome.metrics = {**outcome.metrics, **{k: v for k, v in spent.items() if k.startswith("ai_")}}
    progress = [event(STAGE_PROGRESS, run.id, finished, **p) for p in (ctx.progress_events if ctx else [])]
    notes = buffered_annotations(ctx, run, record) if ctx is not None else []
    try:
        with persistence.atomic():
            item = fanout.is_item(record)  # shares the run row with the other items instead of locking it
            locked = persistence.share_run(run.id) if item else persistence.lock_run(run.id, known=run)
            if locked is None or locked.status != Status.RUNNING:
                raise _Ghost(str(locked.status) if locked else "deleted")
            written = write_outcome(deps, run, record, stage_def, outcome, output_data, finished, duration_ms, item)
            if written is None:
                raise _Ghost("past this item (finished by another delivery, or its map failed)")
            executed = Executed(
                outcome.kind,  # type: ignore[arg-type]
                output=outcome.output if outcome.kind == "completed" else None,
                error=outcome.error if outcome.kind in ("failed", "deferred") else None,
                next_poll_at=_due_again(outcome, written.record),
                retryable=outcome.retryable,
            )
            events = written.events
            if settle is not None:
                executed, settled = _settle(deps, workflow, begun, locked, written.record, executed, settle, finished)
                events += settled
            if early is not None:  # after the job is settled: a woken stage's job goes back in the queue
                events += signals.take_early(deps, written.record, early, outcome.kind, settle is not None, finished)
            if notes:
                persistence.append_annotations([row for row, _ in notes], finished)
            persistence.append_events(progress + events + annotation_events(notes, run.id, finished), causation_id)
    except _Ghost as exc:
        return _ghost(run.id, exc.status, "after execution")
    if outcome.kind == "failed":
        meta: dict[str, Any] = {"retryable": outcome.retryable}
        if settle is not None:
            meta["job_id"] = settle.job_id
        if outcome.error_type:
            meta["error_type"] = outcome.error_type
        if outcome.traceback:
            meta["traceback"] = outcome.traceback
        stage_log_sink(deps, begun.run, begun.record)("ERROR", f"Stage {stage_def.id!r} failed: {outcome.error}", meta)
    elif outcome.kind == "deferred":
        stage_log_sink(deps, begun.run, begun.record)(
            "INFO", f"Stage {stage_def.id!r} deferred: {outcome.error}", {"attempt": record.attempt}
        )
    return executed


def _due_again(outcome: Outcome, written: StageRecord) -> datetime | None:
    """When a suspended stage is polled, or a deferred one runs again."""
    if outcome.kind == "suspended":
        return written.next_poll_at
    return outcome.defer_until if outcome.kind == "deferred" else None


def _settle(
    deps: Deps,
    workflow: Workflow,
    begun: _Begun,
    locked: RunRecord,
    written: StageRecord,
    executed: Executed,
    settle: Settle,
    now: datetime,
) -> tuple[Executed, list[dict[str, Any]]]:
    """In the outcome transaction, run row locked: complete the job and transition the run (the next group is
    enqueued on this commit), or suspend the job. A failed job is settled after the commit by :func:`run_job`."""
    if executed.outcome == "suspended":
        assert executed.next_poll_at is not None
        deps.jobs.suspend(settle.job_id, executed.next_poll_at, now)
        return replace(executed, transition="noop"), []
    if executed.outcome == "deferred":
        assert executed.next_poll_at is not None
        deps.jobs.defer(settle.job_id, executed.next_poll_at, executed.error or "deferred", now)
        return replace(executed, transition="noop"), []
    if executed.outcome != "completed":
        return executed, []
    deps.jobs.complete(settle.job_id, now)
    claim_for = _claim_for(settle)
    mapped = fanout.item_completed(deps, workflow, locked, written, now, claim_for) if fanout.is_item(written) else None
    if mapped is not None and not mapped.finished:  # not the map's last item
        return replace(executed, transition="noop", continuation=mapped.started), mapped.events
    locked = mapped.run or locked if mapped is not None else locked
    # The only stage of its group (not a map): no other stage of the run changed since begin read them (later
    # groups start only from here; cancel and rerun change the locked run row).
    known = None
    if len(workflow.group(begun.record.execution_group)) == 1 and mapped is None:
        known = [s for s in begun.stages if s.id != begun.record.id] + [written]
    advanced = run_transition.advance(deps, locked, now, claim_for=claim_for, stages=known)
    events = (mapped.events if mapped else []) + advanced.events
    return replace(executed, transition=advanced.result.action, continuation=advanced.started), events


def _claim_for(settle: Settle) -> str | None:  # the worker that continues with the run's next stage, if it may
    if settle.worker_id is not None and settle.continue_if is not None and not settle.continue_if():
        return None
    return settle.worker_id


# -- hosts' entry point -----------------------------------------------------------------------------------------


def run_job(
    kernel: Kernel,
    job: JobRecord,
    *,
    on_error: Callable[[BaseException], None] | None = None,
    continue_as: str | None = None,
    continue_if: Callable[[], bool] | None = None,
    started: StartedStage | None = None,
) -> JobOutcome:
    """Execute a job already claimed (RUNNING, leased) and settle it.

    Infrastructure errors (database down, workflow removed) propagate; the job keeps its lease and is
    re-delivered when the lease expires (hosts give it back at once when the error is a busy SQLite database).

    Args:
        continue_as: a worker id: when the stage completes and its run's next group starts, the group's
            first stage is started for this worker in the same transaction (``JobOutcome.continuation``).
        continue_if: asked at that moment; a continuation is started only if it returns True.
        started: execute this continuation (``job`` is ``started.job``) without its begin transaction.
    """
    observer = kernel.deps.options.observer
    if observer is None:
        return _run_job(kernel, job, on_error, continue_as, continue_if, started)
    with observer.stage(job) as record:
        outcome = _run_job(kernel, job, on_error, continue_as, continue_if, started)
        record(outcome)
    return outcome


def _run_job(
    kernel: Kernel,
    job: JobRecord,
    on_error: Callable[[BaseException], None] | None,
    continue_as: str | None,
    continue_if: Callable[[], bool] | None,
    started: StartedStage | None,
) -> JobOutcome:
    deps = kernel.deps
    began = deps.clock.now()
    try:
        # No idempotency key: the claimed job row is the guard (each delivery is a new attempt, and a stage
        # that already COMPLETED is never executed again).
        settle = Settle(job.id, continue_as, continue_if)
        executed = execute(deps, job.run_id, job.workflow_id, job.stage_id, str(uuid.uuid4()), settle, started)
    except (WorkflowNotFound, StageNotFound, RunNotFound) as exc:
        # A job that can never run (its workflow or stage was removed, its run deleted) is quarantined:
        # failed for good with the reason, so it cannot crash-loop through lease expiry and redelivery.
        return quarantine(kernel, job, f"Job quarantined: {exc}", began)
    return finish(kernel, job, executed, began, on_error)
