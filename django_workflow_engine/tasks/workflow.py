"""The one-stage workflow every enqueued task runs as, and the stage that calls the task function.

A task run is an ordinary run of the workflow ``django.tasks``: its input is the task's module path and its
arguments, its single stage ``task`` imports the task and calls it. Leases, retries with backoff, lease
reaping after a SIGKILL, cancel, rerun and the admin's timeline all come from the engine unchanged. Each
attempt writes a log line naming its worker (``TaskResult.worker_ids``); each failed attempt one with the
exception's class path and traceback (``TaskResult.errors``).
"""

from __future__ import annotations

import traceback
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, Field

from ..core.errors import InvalidInput, InvalidOutput, WorkflowEngineError
from ..core.jsonsafe import JSONValueError, check_json_value
from ..core.stage import define_stage
from ..core.workflow import Workflow, WorkflowBuilder

TASK_WORKFLOW_ID = "django.tasks"
TASK_WORKFLOW_NAME = "Django tasks"
TASK_STAGE_ID = "task"
BACKEND_PATH = "django_workflow_engine.tasks.WorkflowEngineBackend"
# Log metadata keys: an attempt's start and a failed attempt's error.
ATTEMPT_KEY = "task_attempt"
ERROR_KEY = "exception_class_path"


# The stage context of the task running in this thread (or coroutine): what ai() attributes calls to.
_CURRENT: ContextVar[Any] = ContextVar("django_workflow_engine_task_context", default=None)


def ai() -> Any:
    """The AI helper for the task running now, like ``ctx.ai()`` in a stage: calls are priced and recorded
    against the task's run and stage (cost in the admin, run totals), and a retried attempt replays the calls
    an earlier attempt already paid for.

    Raises:
        WorkflowEngineError: when no task is running on ``WorkflowEngineBackend`` in this thread.
    """
    ctx = _CURRENT.get()
    if ctx is None:
        raise WorkflowEngineError(
            "tasks.ai() is only available inside a task run by WorkflowEngineBackend; elsewhere use "
            "django_workflow_engine.ai.create_ai_helper(topic)."
        )
    return ctx.ai()


class TaskCall(BaseModel):
    """The input of a task run: which task, its arguments and the options it was enqueued with."""

    task: str = Field(description="Module path of the @task function.")
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    backend: str = "default"
    queue_name: str = "default"
    priority: int = 0
    takes_context: bool = False
    run_after: str | None = None


class InvalidTaskArguments(WorkflowEngineError, TypeError):
    """A task was enqueued with arguments that cannot be stored as JSON; nothing was written.

    A ``TypeError`` too, like the error Django's own backends raise for such arguments.
    """


class TaskCancelled(WorkflowEngineError):
    """Reported in ``TaskResult.errors`` of a task whose run was cancelled."""


def json_arguments(module_path: str, args: Any, kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
    """The task's arguments as plain JSON (tuples become lists), or :class:`InvalidTaskArguments`."""
    from .compat import normalize_json

    for name, value in (("args", list(args)), ("kwargs", dict(kwargs))):
        try:
            check_json_value(value, name)
        except JSONValueError as exc:
            raise InvalidTaskArguments(
                f"Cannot enqueue task {module_path!r}: argument {exc.path} {exc.problem}. Task arguments must be "
                "JSON (str, int, float, bool, None, lists and dicts with string keys): pass ids or ISO strings "
                "instead of objects."
            ) from None
    return normalize_json(list(args)), normalize_json(dict(kwargs))


def load_task(module_path: str) -> Any:
    """The ``Task`` object at ``module_path``."""
    from django.utils.module_loading import import_string

    from .compat import Task

    try:
        task = import_string(module_path)
    except ImportError as exc:
        raise InvalidInput(f"Task {module_path!r} cannot be imported: {exc}") from None
    if not isinstance(task, Task):
        raise InvalidInput(f"{module_path!r} is not a task: decorate the function with @task.")
    return task


def with_options(task: Any, call: TaskCall) -> Any:
    """``task`` as it was enqueued (priority, queue, backend)."""
    return task.using(priority=call.priority, queue_name=call.queue_name, backend=call.backend)


def _attempts(ctx: Any) -> tuple[int, int, str, Any, list[dict[str, Any]]]:
    """(this attempt's number, the job's max attempts, its worker id, the run's creation time, earlier
    attempts' log metadata)."""
    from ..models import WorkflowJob, WorkflowLog

    row = (
        WorkflowJob.objects.filter(run_id=ctx.run_id, stage_id=ctx.stage_id, status="RUNNING")
        .order_by("-created_at")
        .values_list("attempt", "max_attempts", "worker_id", "run__created_at")
        .first()
    )
    attempt, max_attempts, worker_id, enqueued_at = row if row is not None else (1, 1, "in-process", None)
    earlier = list(
        WorkflowLog.objects.filter(run_id=ctx.run_id, stage_id=ctx.stage_record_id, metadata__has_key=ATTEMPT_KEY)
        .order_by("created_at", "id")
        .values_list("metadata", "created_at")
    )
    return attempt, max_attempts, worker_id or "unknown", enqueued_at, [{**(m or {}), "at": at} for m, at in earlier]


def _log_error(ctx: Any, call: TaskCall, attempt: int, exc: BaseException) -> None:
    """One ERROR log line per failed attempt, with what ``TaskResult.errors`` reports."""
    kind = type(exc)
    ctx.log(
        "ERROR",
        f"Task {call.task} attempt {attempt} raised {kind.__qualname__}: {exc}",
        **{ERROR_KEY: f"{kind.__module__}.{kind.__qualname__}", "traceback": "".join(traceback.format_exception(exc))},
    )


def execute_task(ctx: Any) -> dict[str, Any]:
    """The stage: call the task with its arguments (and a ``TaskContext`` if it takes one)."""
    from django.utils import timezone

    from ..kernel.executor import NON_RETRYABLE
    from .compat import TaskContext, TaskResult, TaskResultStatus, normalize_json, task_finished, task_started

    call: TaskCall = ctx.input
    attempt, max_attempts, worker_id, enqueued_at, earlier = _attempts(ctx)
    ctx.log("INFO", f"Task {call.task} attempt {attempt} started", **{ATTEMPT_KEY: attempt, "worker_id": worker_id})
    try:
        task = with_options(load_task(call.task), call)
    except Exception as exc:
        _log_error(ctx, call, attempt, exc)
        raise
    now = timezone.now()
    result = TaskResult(
        task=task,
        id=ctx.run_id,
        status=TaskResultStatus.RUNNING,
        enqueued_at=enqueued_at,
        started_at=earlier[0]["at"] if earlier else now,
        finished_at=None,
        last_attempted_at=now,
        args=call.args,
        kwargs=call.kwargs,
        backend=call.backend,
        errors=[],
        worker_ids=[m.get("worker_id", "unknown") for m in earlier] + [worker_id],
    )
    sender = type(task.get_backend())
    task_started.send(sender=sender, task_result=result)
    args = [TaskContext(task_result=result), *call.args] if call.takes_context else call.args
    token = _CURRENT.set(ctx)
    try:
        value = task.call(*args, **call.kwargs)
        try:
            value = normalize_json(value)
            check_json_value(value, "return value")
        except (TypeError, ValueError) as exc:
            raise InvalidOutput(f"Task {call.task!r} returned a value that cannot be stored as JSON: {exc}") from None
    except Exception as exc:
        _log_error(ctx, call, attempt, exc)
        if attempt >= max_attempts or isinstance(exc, NON_RETRYABLE):
            object.__setattr__(result, "status", TaskResultStatus.FAILED)
            object.__setattr__(result, "finished_at", timezone.now())
            task_finished.send(sender=sender, task_result=result)
        raise
    finally:
        _CURRENT.reset(token)
    object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
    object.__setattr__(result, "finished_at", timezone.now())
    object.__setattr__(result, "_return_value", value)
    task_finished.send(sender=sender, task_result=result)
    return {"return_value": value}


TASK_STAGE = define_stage(
    id=TASK_STAGE_ID,
    name="Task",
    description="Calls a function decorated with Django's @task.",
    input=TaskCall,
    execute=execute_task,
)

TASK_WORKFLOW: Workflow = WorkflowBuilder(TASK_WORKFLOW_ID, TASK_WORKFLOW_NAME, input=TaskCall).pipe(TASK_STAGE).build()


@lru_cache(maxsize=512)
def named_workflow(module_path: str) -> Workflow:
    """The task workflow under the task's module path as its name (what a run created from it records)."""
    return WorkflowBuilder(TASK_WORKFLOW_ID, module_path[:200], input=TaskCall).pipe(TASK_STAGE).build()


def tasks_configured() -> bool:
    """Whether ``settings.TASKS`` names this backend (then the task workflow is registered at autodiscovery)."""
    from django.conf import settings

    backends = getattr(settings, "TASKS", None) or {}
    return any(str(b.get("BACKEND", "")).startswith("django_workflow_engine.tasks") for b in backends.values())
