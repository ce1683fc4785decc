"""The tasks framework this process uses: ``django.tasks`` on Django 6.x, the ``django_tasks`` backport on 5.2.

Both expose the same contract (``BaseTaskBackend``, ``TaskResult``, ``TaskContext`` ...); only the module and
two exception names differ, so the backend imports every framework name from here.
"""

from __future__ import annotations

import django
from django.core.exceptions import ImproperlyConfigured

# django-stubs follows Django 5.2, which has no django.tasks: mypy sees these imports as untyped.
if django.VERSION >= (6, 0):
    from django.tasks import TaskContext, TaskResult, TaskResultStatus, task_backends  # type: ignore[import-untyped,unused-ignore]
    from django.tasks.backends.base import BaseTaskBackend  # type: ignore[import-untyped,unused-ignore]
    from django.tasks.base import Task, TaskError  # type: ignore[import-untyped,unused-ignore]
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist  # type: ignore[import-untyped,unused-ignore]
    from django.tasks.signals import task_enqueued, task_finished, task_started  # type: ignore[import-untyped,unused-ignore]
    from django.utils.json import normalize_json  # type: ignore[import-untyped,unused-ignore]

    FRAMEWORK = "django.tasks"
else:  # pragma: no cover - exercised by the Django 5.2 leg
    try:
        from django_tasks import TaskContext, TaskResult, TaskResultStatus, task_backends
        from django_tasks.backends.base import BaseTaskBackend
        from django_tasks.base import Task, TaskError
        from django_tasks.exceptions import InvalidTaskError as InvalidTask
        from django_tasks.exceptions import TaskResultDoesNotExist
        from django_tasks.signals import task_enqueued, task_finished, task_started
        from django_tasks.utils import normalize_json
    except ImportError as exc:
        raise ImproperlyConfigured(
            "django_workflow_engine.tasks.WorkflowEngineBackend needs Django's tasks framework: on Django 5.2 "
            'install the backport with pip install "django-workflow-engine[tasks]" (django-tasks) and add '
            f'"django_tasks" to INSTALLED_APPS, or upgrade to Django 6. ({exc})'
        ) from exc

    FRAMEWORK = "django_tasks"

__all__ = [
    "FRAMEWORK",
    "BaseTaskBackend",
    "InvalidTask",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "normalize_json",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]
