"""Building blocks shared by the command handlers: group preparation, outputs, inputs, context."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from ..core.errors import BlobNotFound
from ..core.fanout import MapSpec, item_stage_id
from ..core.ids import new_id
from .records import JobRecord, NewJob, RunRecord, StageRecord, StartedStage, Status

if TYPE_CHECKING:
    from ..core.context import BaseContext
    from ..core.workflow import Workflow
    from .deps import Deps

MISSING: Any = object()


@dataclass
class Handled:
    """What a generic-path handler returns: the result, events to append, and an after-commit action."""

    result: Any
    events: list[dict[str, Any]] = field(default_factory=list)
    after_commit: Any = None
    started: StartedStage | None = None  # run.transition: the next stage, started for the calling worker


def stage_prefix(workflow_type: str, run_id: str, stage_id: str) -> str:
    return f"runs/{workflow_type}/{run_id}/{stage_id}/"


def attempt_prefix(workflow_type: str, run_id: str, stage_id: str, attempt: int) -> str:
    # Outputs live under the rerun generation, so a rerun's cleanup of the old generation can never delete
    # what the new one has already written.
    return stage_prefix(workflow_type, run_id, stage_id) + f"attempt-{attempt}/"


def output_key(workflow_type: str, run_id: str, stage_id: str, attempt: int = 0) -> str:
    return attempt_prefix(workflow_type, run_id, stage_id, attempt) + "output.json"


def artifact_key(workflow_type: str, run_id: str, stage_id: str, name: str, attempt: int = 0) -> str:
    from urllib.parse import quote

    return attempt_prefix(workflow_type, run_id, stage_id, attempt) + f"artifacts/{quote(name, safe='')}.json"


def store_output(
    deps: Deps, run: RunRecord, stage_id: str, output: Any, artifacts: Mapping[str, Any], attempt: int = 0
) -> dict[str, Any]:
    """Store a stage output (inline in the stage row when small, else as a blob) and its artifacts.

    Returns the ``output_data`` to write on the stage record.
    """
    data: dict[str, Any]
    encoded = json.dumps(output, separators=(",", ":"))
    if len(encoded) <= deps.options.inline_output_bytes:
        data = {"value": output}
    else:
        key = output_key(run.workflow_type, run.id, stage_id, attempt)
        deps.blobs.put(key, output)
        data = {"artifact_key": key}
    if artifacts:
        keys = {}
        for name, value in artifacts.items():
            key = artifact_key(run.workflow_type, run.id, stage_id, name, attempt)
            deps.blobs.put(key, value)
            keys[name] = key
        data["artifact_keys"] = keys
    return data


def load_output(deps: Deps, stage: StageRecord) -> Any:
    """The stored output of a stage record, or ``MISSING``."""
    data = stage.output_data
    if not data:
        return MISSING
    if "value" in data:
        return data["value"]
    if "artifact_key" in data:
        try:
            return deps.blobs.get(data["artifact_key"])
        except BlobNotFound:
            return MISSING
    return MISSING


def workflow_context(deps: Deps, stages: Iterable[StageRecord]) -> dict[str, Any]:
    """``{stage_id: output}`` of every COMPLETED stage that has an output (a map's items are not stages of
    their own here: the map's record holds their outputs)."""
    context = {}
    for stage in stages:
        if stage.status == Status.COMPLETED and stage.item_index is None:
            value = load_output(deps, stage)
            if value is not MISSING:
                context[stage.stage_id] = value
    return context


class MissingGroupOutput(Exception):
    pass


def group_output(workflow: Workflow, group: int, context: Mapping[str, Any]) -> Any:
    """Resolved output of execution group ``group``: the single stage's output, or ``{stage_id: output}``.

    Raises:
        MissingGroupOutput: naming the stages whose output is missing.
    """
    stages = workflow.group(group)
    missing = [s.id for s in stages if s.id not in context]
    if missing:
        raise MissingGroupOutput(", ".join(missing))
    if len(stages) == 1:
        return context[stages[0].id]
    return {s.id: context[s.id] for s in stages}


def stage_input(workflow: Workflow, run: RunRecord, group: int, context: Mapping[str, Any], stage_id: str) -> Any:
    if group == 1:
        return run.input
    try:
        return group_output(workflow, group - 1, context)
    except MissingGroupOutput as exc:
        raise MissingGroupOutput(
            f"Stage {stage_id!r} (execution group {group}) is missing the output of execution group {group - 1} "
            f"(stages: {exc}); cannot resolve its input."
        ) from None


@dataclass
class StartedGroup:
    """What :func:`prepare_group` did: the job ids enqueued, and the stage started for ``claim_for``."""

    job_ids: list[str]
    started: StartedStage | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False  # a map over an empty list: the group is complete already


def prepare_group(
    deps: Deps,
    run: RunRecord,
    workflow: Workflow,
    group: int,
    attempt: int,
    now: datetime,
    existing: Sequence[StageRecord] | None = None,
    claim_for: str | None = None,
) -> StartedGroup:
    """Create PENDING stage records for ``group`` (existing records are left alone) and enqueue a job for
    each record that is PENDING. ``existing``: the run's stage records, read under the run lock, which lets a
    group with no records yet be inserted without a read-back.

    With ``claim_for`` (a worker id, and ``existing`` given) the group's first stage is started for that
    worker in the same transaction: its record is inserted RUNNING, its job already claimed, and
    ``stage:started`` returned in ``events`` for the caller to append.

    A map group is fanned out (:func:`fan_out`)."""
    spec = workflow.group_map(group)
    if spec is not None:
        return fan_out(deps, run, workflow, spec, group, attempt, now, existing, claim_for)
    known_new = existing is not None and not any(s.execution_group == group for s in existing)
    due = run.scheduled_at if run.scheduled_at is not None and run.scheduled_at > now else None
    # A delayed start is never executed early; a stage with a cluster-wide limit is never started eagerly: it
    # must be admitted when a worker begins it.
    eager = claim_for is not None and known_new and due is None and workflow.group(group)[0].max_concurrent is None
    new_records = group_records(run, workflow, group, attempt, now, eager=eager)
    store = deps.persistence.insert_stages if known_new else deps.persistence.create_stages
    stored = store(new_records, now)
    taken = stored[0] if eager else None
    jobs = group_jobs(deps, run, workflow, stored, taken, claim_for if eager else None, due)
    job_ids = deps.jobs.enqueue(jobs, now) if jobs else []
    if taken is None:
        return StartedGroup(job_ids)
    job = claimed_job(job_ids[0], jobs[0], now)
    started = StartedStage(job=job, run=run, stages=[*existing, *stored], record=taken)  # type: ignore[misc]
    return StartedGroup(job_ids, started, [stage_started_event(taken, now)])


def claimed_job(job_id: str, new: NewJob, now: datetime) -> JobRecord:
    """The job record of ``new``, enqueued as ``job_id`` already claimed by ``new.claimed_by``."""
    return JobRecord(
        id=job_id,
        run_id=new.run_id,
        workflow_id=new.workflow_id,
        stage_id=new.stage_id,
        status=Status.RUNNING,
        priority=new.priority,
        attempt=1,
        max_attempts=new.max_attempts,
        worker_id=new.claimed_by,
        locked_at=now,
        available_at=now,
        started_at=now,
        created_at=now,
        updated_at=now,
    )


def fan_out(
    deps: Deps,
    run: RunRecord,
    workflow: Workflow,
    spec: MapSpec,
    group: int,
    attempt: int,
    now: datetime,
    existing: Sequence[StageRecord] | None,
    claim_for: str | None,
) -> StartedGroup:
    """Start map group ``group``: take the items from the previous group's output, write the map's record and
    one record per item in one batch, and enqueue the first ``max_parallel`` items (all of them without a
    limit); with ``claim_for``, item 0 is started for that worker. An empty list completes the map at once
    (``StartedGroup.finished``), and the caller advances the run again.

    Raises:
        MapInputError: the items are not a list, or too many; nothing was written.
        MissingGroupOutput: the previous group left no output.
    """
    stages = list(existing) if existing is not None else deps.persistence.get_stages(run.id)
    if any(s.execution_group == group for s in stages):
        return StartedGroup([])  # fanned out already
    previous = group_output(workflow, group - 1, workflow_context(deps, stages))
    items = spec.items(previous, deps.options.max_map_items)
    stage = workflow.stage(spec.stage_id)
    total = len(items)
    queued = min(total, spec.max_parallel or total)
    due = run.scheduled_at if run.scheduled_at is not None and run.scheduled_at > now else None
    eager = claim_for is not None and total > 0 and due is None and stage.max_concurrent is None
    config = dict(run.config.get(stage.id) or {})
    base = StageRecord(
        id="",
        run_id=run.id,
        stage_id=stage.id,
        stage_name=stage.name,
        stage_number=workflow.stage_number(stage.id),
        execution_group=group,
        attempt=attempt,
        config=config,
    )
    done = total == 0
    parent = replace(
        base,
        id=new_id(),
        status=Status.COMPLETED if done else Status.RUNNING,
        started_at=now,
        completed_at=now if done else None,
        metrics=map_counts(total, queued),
    )
    if done:
        parent.output_data = store_output(deps, run, stage.id, spec.join([], []), {}, attempt)
    records = [
        replace(
            base,
            id=new_id(),
            stage_id=item_stage_id(stage.id, index),
            item_index=index,
            item=item,
            status=Status.RUNNING if eager and index == 0 else Status.PENDING,
            started_at=now if eager and index == 0 else None,
        )
        for index, item in enumerate(items)
    ]
    deps.persistence.insert_stages([parent, *records], now)
    jobs = group_jobs(deps, run, workflow, records[:queued], records[0] if eager else None, claim_for, due)
    job_ids = deps.jobs.enqueue(jobs, now) if jobs else []
    events = [stage_started_event(parent, now)]
    if done:
        from .events import STAGE_COMPLETED, event

        events.append(event(STAGE_COMPLETED, run.id, now, stage_id=stage.id, stage_name=stage.name, duration_ms=0))
        return StartedGroup(job_ids, None, events, finished=True)
    if not eager:
        return StartedGroup(job_ids, None, events)
    first = records[0]
    started = StartedStage(job=claimed_job(job_ids[0], jobs[0], now), run=run, stages=[first], record=first)
    return StartedGroup(job_ids, started, [*events, stage_started_event(first, now)])


def map_counts(total: int, queued: int) -> dict[str, Any]:
    """A map record's metrics at fan-out: items, items queued so far, done, and the indexes failed for good."""
    return {"map_items": total, "map_queued": queued, "map_done": 0, "map_failed": []}


def group_records(
    run: RunRecord, workflow: Workflow, group: int, attempt: int, now: datetime, eager: bool = False
) -> list[StageRecord]:
    """New PENDING stage records of execution group ``group`` (``eager``: the first one RUNNING from ``now``)."""
    return [
        StageRecord(
            id=new_id(),
            run_id=run.id,
            stage_id=stage.id,
            stage_name=stage.name,
            stage_number=workflow.stage_number(stage.id),
            execution_group=group,
            status=Status.RUNNING if eager and index == 0 else Status.PENDING,
            started_at=now if eager and index == 0 else None,
            attempt=attempt,
            config=dict(run.config.get(stage.id) or {}),
        )
        for index, stage in enumerate(workflow.group(group))
    ]


def group_jobs(
    deps: Deps,
    run: RunRecord,
    workflow: Workflow,
    records: Sequence[StageRecord],
    taken: StageRecord | None = None,
    claim_for: str | None = None,
    due: datetime | None = None,
) -> list[NewJob]:
    """The jobs to enqueue for ``records``: one per PENDING record, and ``taken`` already claimed by
    ``claim_for``; ``due``: not before this time (a delayed start)."""
    return [
        NewJob(
            run_id=run.id,
            workflow_id=run.workflow_id,
            stage_id=record.stage_id,
            priority=run.priority,
            max_attempts=workflow.stage(record.stage_id).max_attempts or deps.options.max_attempts,
            claimed_by=claim_for if record is taken else None,
            available_at=due,
        )
        for record in records
        if record.status == Status.PENDING or record is taken
    ]


def start_pending_sibling(
    deps: Deps, run: RunRecord, stages: Sequence[StageRecord], worker_id: str, now: datetime
) -> StartedGroup | None:
    """Start, for ``worker_id``, a PENDING stage of the run's current group whose job no other worker has
    claimed yet (the first such stage by number), in the caller's transaction with the run row locked: its
    job is claimed, its record marked RUNNING and ``stage:started`` returned in ``events``. ``None`` if every
    sibling is taken. A sibling still PENDING when another one finishes waited that long for a free worker,
    so taking it costs no parallelism."""
    for record in sorted(stages, key=lambda s: s.stage_number):
        if record.status != Status.PENDING:
            continue
        job = deps.jobs.claim_stage(run.id, record.stage_id, worker_id, now)
        if job is None:
            continue
        deps.persistence.update_stage(record.id, {"status": Status.RUNNING, "started_at": now}, now)
        running = replace(record, status=Status.RUNNING, started_at=now, updated_at=now)
        current = [running if s.id == record.id else s for s in stages]
        started = StartedStage(job=job, run=run, stages=current, record=running)
        return StartedGroup([job.id], started, [stage_started_event(running, now)])
    return None


def stage_started_event(record: StageRecord, now: datetime) -> dict[str, Any]:
    """The ``stage:started`` event of a stage record that starts now."""
    from .events import STAGE_STARTED, event

    return event(
        STAGE_STARTED,
        record.run_id,
        now,
        stage_id=record.stage_id,
        stage_name=record.stage_name,
        stage_number=record.stage_number,
        attempt=record.attempt,
    )


class Metered(Protocol):
    """A stage record or row: anything with the stage's ``metrics`` mapping."""

    @property
    def metrics(self) -> Mapping[str, Any] | None: ...


def sum_metrics(stages: Sequence[Metered]) -> tuple[Any, int]:
    """Cost and tokens of ``stages`` from their metrics.

    A stage counts the larger of its ``total_cost`` custom metric and the ``ai_cost`` the AI helper recorded
    (likewise ``total_tokens`` / ``ai_tokens``): a stage that reports its AI spend as ``total_cost`` is not
    counted twice.
    """
    from decimal import Decimal

    cost = Decimal(0)
    tokens = 0
    for stage in stages:
        metrics = stage.metrics or {}
        cost += max(Decimal(str(metrics.get("total_cost") or 0)), Decimal(str(metrics.get("ai_cost") or 0)))
        tokens += max(int(metrics.get("total_tokens") or 0), int(metrics.get("ai_tokens") or 0))
    return cost, tokens


def add_ai_metrics(metrics: Mapping[str, Any] | None, ctx: BaseContext) -> dict[str, Any]:
    """``metrics`` plus the AI spend ``ctx.ai()`` recorded on ``ctx`` (``ai_cost``/``ai_tokens``/``ai_calls``),
    added to what the metrics already hold (a batch stage spends in ``execute`` and in ``check_completion``)."""
    from decimal import Decimal

    merged = dict(metrics or {})
    usage = ctx.ai_usage
    if usage is None:
        return merged
    spent = usage.metrics()
    merged["ai_cost"] = str(Decimal(str(merged.get("ai_cost") or 0)) + Decimal(str(spent["ai_cost"])))
    merged["ai_tokens"] = int(merged.get("ai_tokens") or 0) + int(spent["ai_tokens"])
    merged["ai_calls"] = int(merged.get("ai_calls") or 0) + int(spent["ai_calls"])
    return merged


def error_message(exc: BaseException) -> str:
    """``"ValueError: bad"``; plain ``Exception`` and engine errors keep just the message."""
    text = str(exc) or exc.__class__.__name__
    name = exc.__class__.__name__
    if name in ("Exception",):
        return text
    return f"{name}: {text}"
