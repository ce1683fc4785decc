"""Django's tasks framework (``django.tasks``; the ``django-tasks`` backport on Django 5.2) backed by the engine.

``TASKS = {"default": {"BACKEND": "django_workflow_engine.tasks.WorkflowEngineBackend"}}`` makes every
``@task`` function enqueued through the standard API a durable one-stage run. See docs/tasks.md.
"""

from __future__ import annotations

from typing import Any

from .workflow import TASK_WORKFLOW_ID, InvalidTaskArguments, TaskCancelled, ai

__all__ = ["TASK_WORKFLOW_ID", "InvalidTaskArguments", "TaskCancelled", "WorkflowEngineBackend", "ai"]


def __getattr__(name: str) -> Any:
    # The backend imports the framework (django.tasks or django_tasks): only when it is asked for.
    if name == "WorkflowEngineBackend":
        from .backend import WorkflowEngineBackend

        return WorkflowEngineBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
