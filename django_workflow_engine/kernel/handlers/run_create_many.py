"""``run.createMany``: validate every input, then create and start the runs in batches.

Each input goes through ``run.create``'s own validation; the first bad one raises its error with
``inputs[<index>]: `` in front of the message (and ``index`` set on the exception), before anything is
written. Each batch is one transaction (on PostgreSQL one statement: runs, first-group stages, jobs, events
and idempotency results leave together) whose jobs ring the doorbell once, after its commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...core.errors import IdempotencyInProgressError, InvalidInput, WorkflowEngineError, WorkflowNotFound
from ..commands import CreateRun, CreateRunResult, CreateRuns, CreateRunsResult
from ..events import WORKFLOW_CREATED, WORKFLOW_STARTED, event
from ..flow import group_jobs, group_records
from ..kernel import Deps, _cacheable
from ..records import RunRecord
from ..validation import check_idempotency_key
from .run_create import new_run, validate

RESULT = CreateRunsResult


def _check_arguments(command: CreateRuns) -> list[str | None]:
    if isinstance(command.batch_size, bool) or not isinstance(command.batch_size, int) or command.batch_size < 1:
        raise WorkflowEngineError(f"batch_size must be an integer >= 1, got {command.batch_size!r}.")
    keys = list(command.idempotency_keys) if command.idempotency_keys is not None else [None] * len(command.inputs)
    if len(keys) != len(command.inputs):
        raise WorkflowEngineError(
            f"idempotency_keys has {len(keys)} item(s) for {len(command.inputs)} input(s); give one per input "
            "(None for an input without a key)."
        )
    seen: dict[str, int] = {}
    for index, key in enumerate(keys):
        if key is None:
            continue
        if not isinstance(key, str) or not key:
            raise WorkflowEngineError(f"idempotency_keys[{index}] must be a non-empty string or None, got {key!r}.")
        check_idempotency_key(key, f"idempotency_keys[{index}]")
        if key in seen:
            raise WorkflowEngineError(
                f"idempotency_keys[{index}] repeats idempotency_keys[{seen[key]}] ({key!r}); keys must be unique."
            )
        seen[key] = index
    return keys


def _validated(command: CreateRuns, deps: Deps) -> tuple[Any, list[tuple[Any, Any]]]:
    """(workflow, [(input, config), ...]); an input's error is raised with its index, arguments shared by
    every item (workflow id, config, priority) fail as they would for ``run.create``."""
    workflow = deps.registry.get(command.workflow_id)
    if workflow is None:
        raise WorkflowNotFound(command.workflow_id, deps.registry.ids())
    if getattr(workflow, "max_concurrent_runs", None) is not None:
        from ...core.errors import WorkflowEngineError

        raise WorkflowEngineError(
            f"Workflow {workflow.id!r} has max_concurrent_runs: start its runs one by one with engine.start(), "
            "which admits each to a concurrency slot; start_many() does not."
        )
    items = []
    for index, raw in enumerate(command.inputs):
        item = CreateRun(
            workflow_id=command.workflow_id, input=raw, config=command.config, priority=command.priority, start=True
        )
        try:
            workflow, data, config = validate(item, deps)
        except InvalidInput as exc:
            exc.args = (f"inputs[{index}]: {exc.args[0] if exc.args else exc}", *exc.args[1:])
            exc.index = index  # type: ignore[attr-defined]
            raise
        items.append((data, config))
    return workflow, items


def handle(command: CreateRuns, deps: Deps, causation_id: str) -> CreateRunsResult:
    keys = _check_arguments(command)
    workflow, items = _validated(command, deps)
    run_ids: list[str] = []
    runs: list[RunRecord | None] = []
    for start in range(0, len(items), command.batch_size):
        ids, records = _batch(
            command,
            deps,
            workflow,
            items[start : start + command.batch_size],
            keys[start : start + command.batch_size],
            causation_id,
        )
        run_ids += ids
        runs += records
    return CreateRunsResult(run_ids=run_ids, runs=runs)


def _batch(
    command: CreateRuns,
    deps: Deps,
    workflow: Any,
    items: Sequence[tuple[Any, Any]],
    keys: Sequence[str | None],
    causation_id: str,
) -> tuple[list[str], list[RunRecord | None]]:
    persistence = deps.persistence
    now = deps.clock.now()
    replayed: dict[int, str] = {}
    acquired: list[str] = []
    for offset, key in enumerate(keys):
        if key is None:
            continue
        claim = persistence.acquire_idempotency_key(key, CreateRun.type, now, deps.options.idempotency_stale_seconds)
        if claim.state == "replay":
            replayed[offset] = CreateRunResult(**claim.result).run_id
        elif claim.state == "in_progress":
            _release(persistence, acquired)
            raise IdempotencyInProgressError(key, CreateRun.type)
        else:
            acquired.append(key)
    try:
        with persistence.atomic():
            records = [
                new_run(
                    CreateRun(workflow_id=workflow.id, input=data, priority=command.priority, start=True),
                    workflow,
                    data,
                    config,
                    now,
                )
                for offset, (data, config) in enumerate(items)
                if offset not in replayed
            ]
            created = persistence.create_runs(records, now)
            stages = []
            jobs = []
            events = []
            for run in created:
                first = group_records(run, workflow, 1, 0, now)
                stages += first
                jobs += group_jobs(deps, run, workflow, first)
                events += [
                    event(WORKFLOW_CREATED, run.id, now, workflow_id=workflow.id),
                    event(WORKFLOW_STARTED, run.id, now),
                ]
            persistence.insert_stages(stages, now)
            deps.jobs.enqueue(jobs, now)  # one doorbell ring for the batch, after commit
            persistence.append_events(events, causation_id)
            made = iter(created)
            out_ids: list[str] = []
            out_runs: list[RunRecord | None] = []
            for offset in range(len(items)):
                if offset in replayed:
                    out_ids.append(replayed[offset])
                    out_runs.append(None)
                    continue
                run = next(made)
                out_ids.append(run.id)
                out_runs.append(run)
                key = keys[offset]
                if key is not None:
                    result = CreateRunResult(run_id=run.id, status=str(run.status))
                    persistence.complete_idempotency_key(key, CreateRun.type, _cacheable(result))
    except BaseException:
        _release(persistence, acquired)
        raise
    return out_ids, out_runs


def _release(persistence: Any, keys: Sequence[str]) -> None:
    for key in keys:
        persistence.release_idempotency_key(key, CreateRun.type)
