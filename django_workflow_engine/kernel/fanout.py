"""The join of a map stage: items settle one by one, the map's record counts them, the last one finishes it.

An item does not lock its run: its begin and outcome transactions share the run row (``share_run``: a
command that locks the run, such as a cancel or a rerun, waits for them, and they for it, but items never wait
for each other there). Its record is written only if it is still open (``update_open_stage``: a cancelled,
superseded or already finished item is a ghost), and it counts itself on its map's record in one atomic
statement (``count_map_items``) as late in its transaction as it can. The map's record holds the counts in its
metrics (``map_items``, ``map_queued``, ``map_done``, ``map_failed``: the indexes of items failed for good);
the item whose count makes the map complete finishes it and advances the run, still sharing the run row (a
``lock_run`` there would wait for items in flight that wait for its event counter); only it reads every item, to
hand the next group their outputs in item order. Items failed for good are counted by the run's transition,
which locks the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..core.errors import InvalidRunState, RunNotFound, StageNotFound
from ..core.fanout import MapSpec, item_stage_id, split_item
from ..core.ids import new_id
from .events import STAGE_COMPLETED, STAGE_FAILED, event
from .flow import MISSING, claimed_job, group_jobs, load_output, stage_started_event, store_output
from .records import JobRecord, RunRecord, StageRecord, StartedStage, Status

if TYPE_CHECKING:
    from ..core.workflow import Stage, Workflow
    from .deps import Deps


@dataclass
class Settled:
    """What settling items did: the events to append, the next item started for the calling worker, and
    whether the map finished (then the caller advances the run)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    started: StartedStage | None = None
    finished: bool = False
    run: RunRecord | None = None


def is_item(record: StageRecord) -> bool:
    return record.item_index is not None


def item_stages(deps: Deps, workflow: Workflow, run_id: str, stage_id: str) -> list[StageRecord]:
    """What an item's begin reads: ``[its record]``, or ``[]`` when its map failed and cancelled it.

    Raises:
        StageNotFound: the run has no such item.
    """
    record = deps.persistence.get_stage(run_id, stage_id)
    if record is None:
        raise StageNotFound(workflow.id, stage_id, workflow.stage_ids())
    return [] if record.status == Status.CANCELLED else [record]


def item_input(stage_def: Stage, record: StageRecord) -> Any:
    """An item's input: validated by the stage's input model, or as it is for a stage without one (a chunk of
    text, a number)."""
    return record.item if stage_def.input is None else stage_def.parse_input(record.item)


def start_item(deps: Deps, run_id: str, stage_id: str, now: datetime) -> tuple[RunRecord, StageRecord] | str | None:
    """An item's begin, in the caller's transaction, without the run lock: the run shared and read, the item's
    record marked RUNNING if it is open. Returns the run and the record, or why this delivery is a ghost, or
    ``None`` when the locked begin must decide (a finished or suspended item, a run past its deadline).

    Raises:
        RunNotFound, StageNotFound: no such run, or no such item.
    """
    from .handlers.run_expire_deadlines import past_deadline

    persistence = deps.persistence
    run = persistence.share_run(run_id)
    if run is None:
        raise RunNotFound(run_id)
    if run.status != Status.RUNNING:
        return str(run.status)
    if past_deadline(run, now):
        return None
    fields = {"status": Status.RUNNING, "started_at": now}
    record = persistence.update_open_stage(run_id, stage_id, fields, now, _STARTABLE)
    if record is not None:
        return run, record
    current = persistence.get_stage(run_id, stage_id)
    if current is None:
        raise StageNotFound(run.workflow_id, stage_id, [])
    return "past this item (its map failed)" if current.status == Status.CANCELLED else None


_STARTABLE = (Status.PENDING, Status.RUNNING, Status.FAILED)  # FAILED: a retry; RUNNING: a lease that expired


def item_completed(
    deps: Deps, workflow: Workflow, run: RunRecord, item: StageRecord, now: datetime, claim_for: str | None
) -> Settled:
    """Item ``item`` completed, its record written (the run shared, not locked): another item is started for
    ``claim_for`` (taken from the queue, or queued when ``max_parallel`` held it back), the item is counted on
    its map's record, and the map is finished after its last item (``Settled.run``: the run, read again, for
    the caller to advance)."""
    base = split_item(item.stage_id)[0]
    spec = workflow.maps[base]
    result = Settled()
    # The caller completed this item's job first: a claim (SKIP LOCKED) may keep a lock on a job another worker
    # took a moment ago, and that worker must not then wait for it while holding the map's row (a deadlock).
    if claim_for is not None and spec.max_parallel is None:  # before counting: the count is the last statement
        result.started = _take(deps, run, base, now, claim_for)
    parent = deps.persistence.count_map_items(run.id, base, 1, [], now)
    if parent is not None:
        _counted(deps, workflow, spec, run, parent, 1, now, claim_for, result)
    if result.started is not None:
        result.events.append(stage_started_event(result.started.record, now))
    if result.finished:
        result.run = deps.persistence.get_run(run.id)
    return result


def items_failed(
    deps: Deps, workflow: Workflow, run: RunRecord, stages: Sequence[StageRecord], now: datetime
) -> Settled:
    """Items failed for good (their jobs have no attempt left): with ``on_error="fail"`` the map fails, its
    open items are cancelled and the caller fails the run; with ``"continue"`` they count as settled."""
    running = {s.stage_id for s in stages if not is_item(s) and s.status == Status.RUNNING}
    failed = [s for s in stages if is_item(s) and s.status == Status.FAILED and split_item(s.stage_id)[0] in running]
    if not failed:  # none, or only items of maps that finished: no read
        return Settled()
    retrying = {
        j.stage_id
        for j in deps.jobs.jobs_for_run(run.id)
        if j.status == Status.RUNNING or (j.status == Status.PENDING and j.attempt > 0)
    }
    result = Settled()
    for base in sorted({split_item(s.stage_id)[0] for s in failed}):
        parent = next((s for s in stages if s.stage_id == base and not is_item(s)), None)
        if parent is None or parent.status != Status.RUNNING:
            continue
        spec = workflow.maps[base]
        counts = dict(parent.metrics or {})
        known = set(counts.get("map_failed") or [])
        new = [
            s
            for s in failed
            if split_item(s.stage_id)[0] == base and s.stage_id not in retrying and s.item_index not in known
        ]
        if not new:
            continue
        if spec.on_error == "fail":
            first = min(new, key=lambda s: s.item_index or 0)
            message = f"Item {first.item_index} of map stage {base!r} failed: {first.error_message or 'failed'}"
            result.events += _fail_map(deps, run, parent, [s.item_index or 0 for s in new], message, now)
            continue
        counted = deps.persistence.count_map_items(run.id, base, 0, [s.item_index or 0 for s in new], now)
        if counted is not None:
            settled = _counted(deps, workflow, spec, run, counted, len(new), now, None, Settled())
            result.events += settled.events
            result.finished = result.finished or settled.finished
    return result


def _counted(
    deps: Deps,
    workflow: Workflow,
    spec: MapSpec,
    run: RunRecord,
    parent: StageRecord,
    freed: int,
    now: datetime,
    claim_for: str | None,
    result: Settled,
) -> Settled:
    """``freed`` items were counted on ``parent`` (as the count left it): finish the map if none is left, else
    queue as many items as ``max_parallel`` held back. Each count sees its own total, so the items it queues
    (``max_parallel + settled - freed`` up to ``max_parallel + settled``) are queued by it alone."""
    counts = parent.metrics or {}
    total = int(counts["map_items"])
    settled = int(counts.get("map_done", 0)) + len(counts.get("map_failed") or [])
    if settled >= total:
        result.events += _finish(deps, spec, run, parent, now)
        result.finished = True
        return result
    if spec.max_parallel is not None and result.started is None:
        start, stop = (min(total, spec.max_parallel + n) for n in (settled - freed, settled))
        if start < stop:
            result.started = _queue(deps, workflow, run, parent, start, stop, now, claim_for)
        elif claim_for is not None:
            result.started = _take(deps, run, parent.stage_id, now, claim_for)
    return result


def _queue(
    deps: Deps,
    workflow: Workflow,
    run: RunRecord,
    parent: StageRecord,
    start: int,
    stop: int,
    now: datetime,
    claim_for: str | None,
) -> StartedStage | None:
    """Enqueue items ``start`` to ``stop - 1`` (held back by ``max_parallel``); item ``start`` is started for
    ``claim_for`` when given."""
    records = [
        record
        for index in range(start, stop)
        if (record := deps.persistence.get_stage(run.id, item_stage_id(parent.stage_id, index))) is not None
        and record.status == Status.PENDING
    ]
    if not records:
        return None
    taken = records[0] if claim_for is not None else None
    jobs = group_jobs(deps, run, workflow, records, taken, claim_for)
    job_ids = deps.jobs.enqueue(jobs, now)
    if taken is None:
        return None
    deps.persistence.update_stage(taken.id, {"status": Status.RUNNING, "started_at": now}, now)
    running = replace(taken, status=Status.RUNNING, started_at=now, updated_at=now)
    job: JobRecord = claimed_job(job_ids[0], jobs[0], now)
    return StartedStage(job=job, run=run, stages=[running], record=running)


def _take(deps: Deps, run: RunRecord, base: str, now: datetime, claim_for: str) -> StartedStage | None:
    """Start for ``claim_for`` an item of map ``base`` whose job no worker has taken yet (the oldest queued:
    ``claim_item`` skips jobs other workers are claiming), so the worker that finished an item goes on without
    a queue round trip."""
    job = deps.jobs.claim_item(run.id, base, claim_for, now)
    if job is None:
        return None
    fields = {"status": Status.RUNNING, "started_at": now}
    record = deps.persistence.update_open_stage(run.id, job.stage_id, fields, now, (Status.PENDING, Status.FAILED))
    if record is None:  # not an item to start (another delivery has it): its job goes back
        deps.jobs.release(job.id, claim_for, now)
        return None
    return StartedStage(job=job, run=run, stages=[record], record=record)


def _finish(deps: Deps, spec: MapSpec, run: RunRecord, parent: StageRecord, now: datetime) -> list[dict[str, Any]]:
    """Every item settled: the map's record COMPLETED with the outputs in item order (and the errors)."""
    items = sorted(
        (s for s in deps.persistence.get_stages(run.id) if is_item(s) and split_item(s.stage_id)[0] == spec.stage_id),
        key=lambda s: s.item_index or 0,
    )
    outputs: list[Any] = []
    errors: list[dict[str, Any]] = []
    for item in items:
        value = load_output(deps, item) if item.status == Status.COMPLETED else MISSING
        outputs.append(None if value is MISSING else value)
        if item.status == Status.FAILED:
            errors.append({"index": item.item_index, "error": item.error_message or "failed"})
    output_data = store_output(deps, run, parent.stage_id, spec.join(outputs, errors), {}, parent.attempt)
    duration_ms = int((now - (parent.started_at or now)).total_seconds() * 1000)
    deps.persistence.update_stage(
        parent.id,
        {
            "status": Status.COMPLETED,
            "completed_at": now,
            "duration_ms": duration_ms,
            "output_data": output_data,
        },
        now,
    )
    names = {"stage_id": parent.stage_id, "stage_name": parent.stage_name}
    return [event(STAGE_COMPLETED, run.id, now, **names, duration_ms=duration_ms)]


def _fail_map(
    deps: Deps,
    run: RunRecord,
    parent: StageRecord,
    indexes: list[int],
    message: str,
    now: datetime,
) -> list[dict[str, Any]]:
    """An item failed for good under ``on_error="fail"``: the map's record FAILED and the run's open stages
    (the other items) cancelled, so the run fails now rather than after its last item."""
    deps.persistence.count_map_items(run.id, parent.stage_id, 0, indexes, now)
    deps.persistence.update_stage(
        parent.id, {"status": Status.FAILED, "completed_at": now, "error_message": message}, now
    )
    deps.persistence.cancel_open_stages(run.id, now)
    names = {"stage_id": parent.stage_id, "stage_name": parent.stage_name}
    return [event(STAGE_FAILED, run.id, now, **names, error=message)]


def rerun_item(
    deps: Deps,
    run: RunRecord,
    workflow: Workflow,
    stages: Sequence[StageRecord],
    stage_id: str,
    now: datetime,
    actor: str | None,
) -> tuple[list[StageRecord], list[StageRecord]]:
    """``rerun_from`` an item (``"summarize[3]"``): that item runs again on its own, then its map finishes again
    (the other items' outputs kept) and the groups after it run again. Supersedes the item's and its map's
    records and every later group's, and writes the new generation of the two: ``(replaced, new records)``.

    Raises:
        StageNotFound: the run has no such item.
        InvalidRunState: the map did not complete (it failed: its other items were cancelled; rerun the map).
    """
    base, _ = split_item(stage_id)
    item = next((s for s in stages if s.stage_id == stage_id), None)
    parent = next((s for s in stages if s.stage_id == base and not is_item(s)), None)
    if item is None or parent is None:
        raise StageNotFound(workflow.id, stage_id, workflow.stage_ids())
    if parent.status != Status.COMPLETED:
        raise InvalidRunState(
            run.id,
            str(parent.status),
            f"rerun of one item of map stage {base!r} (rerun {base!r} itself)",
            ["COMPLETED"],
        )
    persistence = deps.persistence
    replaced = persistence.supersede_stages_from_group(run.id, parent.execution_group + 1, now, actor)
    for record in (parent, item):
        persistence.update_stage(record.id, {"superseded_at": now, "superseded_by": actor}, now)
    attempt = max(s.attempt for s in [*replaced, parent, item]) + 1
    counts = dict(parent.metrics or {})
    if item.status == Status.COMPLETED:
        counts["map_done"] = int(counts.get("map_done", 0)) - 1
    counts["map_failed"] = [i for i in counts.get("map_failed") or [] if i != item.item_index]
    fresh: dict[str, Any] = {"completed_at": None, "duration_ms": None, "output_data": None, "error_message": None}
    again = [
        replace(parent, **fresh, id=new_id(), status=Status.RUNNING, attempt=attempt, started_at=now, metrics=counts),
        replace(item, **fresh, id=new_id(), status=Status.PENDING, attempt=attempt, started_at=None, metrics=None),
    ]
    again = persistence.create_stages(again, now)  # after the supersede: a read-back, not a queued insert
    return [parent, item, *replaced], again
