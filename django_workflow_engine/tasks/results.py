"""``TaskResult`` objects read from a task's run: status, times, workers, errors and return value."""

from __future__ import annotations

from typing import Any

from .compat import TaskError, TaskResult, TaskResultDoesNotExist, TaskResultStatus
from .workflow import ATTEMPT_KEY, ERROR_KEY, TASK_WORKFLOW_ID, TaskCall, load_task, with_options

FINISHED = {"COMPLETED": TaskResultStatus.SUCCESSFUL, "FAILED": TaskResultStatus.FAILED}


def task_status(run_status: str, job_status: str | None) -> Any:
    """A run's status as the framework's: queued, waiting to retry or due later is READY."""
    if run_status in FINISHED:
        return FINISHED[run_status]
    if run_status == "CANCELLED":
        return TaskResultStatus.FAILED
    if run_status == "RUNNING" and job_status == "RUNNING":
        return TaskResultStatus.RUNNING
    return TaskResultStatus.READY


def load_result(result_id: Any, using: str) -> Any:
    """The ``TaskResult`` of run ``result_id`` (three indexed reads), or ``TaskResultDoesNotExist``."""
    from ..models import WorkflowJob, WorkflowLog, WorkflowRun

    run = (
        WorkflowRun.objects.using(using)
        .filter(pk=str(result_id), workflow_id=TASK_WORKFLOW_ID)
        .only("id", "status", "created_at", "completed_at", "input", "output")
        .first()
    )
    if run is None:
        raise TaskResultDoesNotExist(f"No task result with id {result_id!r}.")
    job = (
        WorkflowJob.objects.using(using)
        .filter(run_id=run.id)
        .order_by("-created_at")
        .values("status", "started_at")
        .first()
    )
    logs = [
        (meta or {}, at)  # metadata is never NULL here: the filter asks for one of its keys
        for meta, at in WorkflowLog.objects.using(using)
        .filter(run_id=run.id, level__in=("INFO", "ERROR"))
        .filter(metadata__has_any_keys=[ATTEMPT_KEY, ERROR_KEY])
        .order_by("created_at", "id")
        .values_list("metadata", "created_at")
    ]
    call = TaskCall.model_validate(run.input)
    status = task_status(run.status, job["status"] if job else None)
    attempts = [(meta, at) for meta, at in logs if ATTEMPT_KEY in meta]
    errors = [
        TaskError(exception_class_path=meta[ERROR_KEY], traceback=meta.get("traceback", ""))
        for meta, _ in logs
        if ERROR_KEY in meta
    ]
    if run.status == "CANCELLED":
        errors.append(
            TaskError(
                exception_class_path="django_workflow_engine.tasks.TaskCancelled",
                traceback=f"The task's run {run.id} was cancelled.",
            )
        )
    elif run.status == "FAILED" and not errors:
        # Failed without the task raising: e.g. quarantined by the worker. The run output says why.
        message = ((run.output or {}).get("error") or {}).get("message") or "The task's run failed."
        errors.append(
            TaskError(exception_class_path="django_workflow_engine.errors.WorkflowEngineError", traceback=message)
        )
    result = TaskResult(
        task=with_options(load_task(call.task), call),
        id=run.id,
        status=status,
        enqueued_at=run.created_at,
        started_at=attempts[0][1] if attempts else None,
        finished_at=run.completed_at if status in (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED) else None,
        last_attempted_at=attempts[-1][1] if attempts else None,
        args=call.args,
        kwargs=call.kwargs,
        backend=call.backend,
        errors=errors,
        worker_ids=[meta.get("worker_id", "unknown") for meta, _ in attempts],
    )
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", (run.output or {}).get("return_value"))
    return result
