"""``run.create``: validate input and config, insert a PENDING run (or, with ``start``, a RUNNING one with
its first group enqueued, in the same transaction)."""

from __future__ import annotations

import json
from typing import Any

from ...core.errors import InvalidInput, WorkflowNotFound
from ...core.ids import new_id
from .. import concurrency
from ..commands import CreateRun, CreateRunResult
from ..events import WORKFLOW_CREATED, WORKFLOW_STARTED, event
from ..flow import Handled, prepare_group
from ..kernel import Deps
from ..records import AnnotationRecord, RunRecord, Status
from ..validation import check_deadline, check_max_cost, start_time, validate_run_arguments

RESULT = CreateRunResult


def validate(command: CreateRun, deps: Deps) -> tuple[Any, Any, dict[str, Any]]:
    """Return (workflow, input, config) or raise a specific error; writes nothing."""
    validate_run_arguments(command)
    workflow = deps.registry.get(command.workflow_id)
    if workflow is None:
        raise WorkflowNotFound(command.workflow_id, deps.registry.ids())
    data = workflow.parse_input(command.input)
    size = len(json.dumps(data, separators=(",", ":")))
    if size > deps.options.max_input_bytes:
        raise InvalidInput(
            f"Input for workflow {workflow.id!r} is {size} bytes as JSON; the limit is {deps.options.max_input_bytes} "
            "(WORKFLOW_ENGINE['MAX_INPUT_BYTES']). Store large documents in blob storage and pass a key."
        )
    config = workflow.resolve_config(command.config)
    return workflow, data, config


_max_cost = check_max_cost


def new_run(command: CreateRun, workflow: Any, data: Any, config: dict[str, Any], now: Any) -> RunRecord:
    """The record of a run ``command`` creates (validated ``data`` and ``config``), RUNNING if it starts now.

    Raises:
        InvalidDeadline: for a deadline that is past, naive or not a positive duration."""
    deadline = command.deadline if command.deadline is not None else workflow.timeout
    run = RunRecord(
        id=command.run_id or new_id(),
        workflow_id=workflow.id,
        workflow_name=workflow.name,
        workflow_type=workflow.id,
        input=data,
        config=config,
        priority=command.priority,
        metadata=command.metadata,
        max_cost=_max_cost(command.max_cost),
        deadline_at=check_deadline(deadline, now),
        parent_run_id=command.parent_run_id,
        parent_stage_id=command.parent_stage_id,
        child_key=command.child_key,
    )
    if command.start:
        run.status = Status.RUNNING
        run.started_at = now
    return run


def handle(command: CreateRun, deps: Deps) -> Handled:
    start = command.start
    now = deps.clock.now()
    due = start_time(command.start_at, command.delay, now)
    workflow, data, config = validate(command, deps)
    key = workflow.run_concurrency_key(data)  # raises before anything is written
    record = new_run(command, workflow, data, config, now)
    if due is not None:
        record.scheduled_at = due
        if record.started_at is not None:
            record.started_at = due
    record.concurrency_key = key
    if key is not None and start and not concurrency.admit(deps, workflow, record, now):
        record.status, record.started_at, start = Status.PENDING, None, False  # waits for a slot
    run = deps.persistence.create_run(record, now)
    events = [event(WORKFLOW_CREATED, run.id, now, workflow_id=workflow.id)]
    if command.annotations:
        rows = [
            AnnotationRecord(
                id=0,
                run_id=run.id,
                key=item["key"],
                value=item["value"],
                scope="run",
                actor_kind=(item.get("actor") or {}).get("kind"),
                actor_id=(item.get("actor") or {}).get("id"),
                actor_version=(item.get("actor") or {}).get("version"),
                payload=item.get("payload"),
                idempotency_key=item.get("idempotency_key"),
            )
            for item in command.annotations
            if item.get("value") is not None
        ]
        deps.persistence.append_annotations(rows, now)
    if start:
        # A new run has no stage records: its first group is inserted without a read-back.
        prepare_group(deps, run, workflow, 1, 0, now, existing=[])
        events.append(event(WORKFLOW_STARTED, run.id, now))
    return Handled(CreateRunResult(run_id=run.id, status=str(run.status), run=run), events)
