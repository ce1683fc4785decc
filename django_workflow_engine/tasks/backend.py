"""``WorkflowEngineBackend``: Django's tasks framework on top of the engine (see docs/tasks.md)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..core.errors import InvalidInput
from .compat import BaseTaskBackend, InvalidTask, TaskResult, TaskResultStatus, task_enqueued
from .results import load_result
from .workflow import (
    TASK_WORKFLOW,
    TASK_WORKFLOW_ID,
    InvalidTaskArguments,
    TaskCall,
    json_arguments,
    named_workflow,
)


class _TaskRegistry:
    """The engine's registry, with the task workflow named after the task being enqueued."""

    def __init__(self, module_path: str):
        self.module_path = module_path

    def get(self, workflow_id: str) -> Any:
        from ..registry import registry

        if workflow_id == TASK_WORKFLOW_ID:
            return named_workflow(self.module_path)
        return registry.get(workflow_id)

    def ids(self) -> list[str]:
        from ..registry import registry

        return registry.ids()


class WorkflowEngineBackend(BaseTaskBackend):
    """Runs every enqueued task as a durable one-stage workflow run.

    ``TASKS = {"default": {"BACKEND": "django_workflow_engine.tasks.WorkflowEngineBackend"}}``. Options:
    ``QUEUES`` (the queue names tasks may use, default ``["default"]``; all of them run on the engine's one
    queue) and ``OPTIONS = {"DATABASE": "default"}`` (the database alias runs are written to). The task
    result id is the run id.
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]):
        super().__init__(alias, params)
        self.using: str = self.options.get("DATABASE", "default")
        from ..registry import registry

        # Autodiscovery registers it when settings.TASKS names this backend; this covers settings changed later.
        # register(), not get(): the backend is built when a tasks module is imported (@task), and autodiscovery
        # from there could import that half-imported module again through a workflows.py.
        registry.register(TASK_WORKFLOW)

    def validate_task(self, task: Any) -> None:
        if self.queues and task.queue_name not in self.queues:
            raise InvalidTask(
                f"Task {task.module_path!r} uses queue {task.queue_name!r}, which task backend {self.alias!r} does "
                f"not accept (its queues: {', '.join(sorted(self.queues))}). Add it to "
                f"TASKS[{self.alias!r}]['QUEUES']: every queue runs on the engine's queue, "
                "WORKFLOW_ENGINE['RQ_QUEUE']."
            )
        super().validate_task(task)

    def enqueue(self, task: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        """Create the task's run (RUNNING, its job due now or at ``run_after``) in the caller's transaction:
        a task enqueued in a transaction that rolls back never runs, and workers are rung only on commit."""
        self.validate_task(task)
        json_args, json_kwargs = json_arguments(task.module_path, args, kwargs)
        run_after = task.run_after
        call = TaskCall(
            task=task.module_path,
            args=json_args,
            kwargs=json_kwargs,
            backend=self.alias,
            queue_name=task.queue_name,
            priority=task.priority,
            takes_context=task.takes_context,
            run_after=run_after.isoformat() if run_after is not None else None,
        )
        from ..facade import Engine

        engine = Engine(using=self.using, registry=_TaskRegistry(task.module_path))
        with transaction.atomic(using=self.using):
            try:
                run = engine.start(TASK_WORKFLOW_ID, call.model_dump(mode="json"), priority=task.priority)
            except InvalidInput as exc:  # e.g. larger than MAX_INPUT_BYTES: say which task
                raise InvalidTaskArguments(f"Cannot enqueue task {task.module_path!r}: {exc}") from None
            if run_after is not None and run_after > timezone.now():
                _defer(run.id, run_after, self.using)
        result = TaskResult(
            task=task,
            id=run.id,
            status=TaskResultStatus.READY,
            enqueued_at=run.created_at,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=json_args,
            kwargs=json_kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> Any:
        """The task result of run ``result_id``; ``TaskResultDoesNotExist`` for an unknown id or a run that
        did not come from a task."""
        return load_result(result_id, self.using)


def _defer(run_id: str, run_after: datetime, using: str) -> None:
    """Make the run's job due at ``run_after``; with the RQ transport, schedule a message for then too."""
    from ..conf import settings
    from ..models import WorkflowJob

    WorkflowJob.objects.using(using).filter(run_id=run_id, status="PENDING").update(available_at=run_after)
    if settings.TRANSPORT == "rq":
        ids = list(WorkflowJob.objects.using(using).filter(run_id=run_id).values_list("id", flat=True))
        transaction.on_commit(lambda: _ring_at(ids, run_after), using=using, robust=True)


def _ring_at(job_ids: list[str], when: datetime) -> None:
    """Schedule one RQ message per job for ``when``. Its RQ id is not the job id: the message rung for "now"
    when the run started has that id, finds the job not yet due and is skipped, and RQ then deletes the data
    of the message with its id (a scheduled message sharing it would be lost)."""
    from ..adapters.rq import JOB_FUNCTION, get_queue, not_before

    queue = get_queue()
    when = not_before(when)
    for job_id in job_ids:
        queue.enqueue_at(when, JOB_FUNCTION, job_id, job_id=f"{job_id}-due", result_ttl=0, failure_ttl=3600)
