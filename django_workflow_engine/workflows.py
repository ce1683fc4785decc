"""Autodiscovered like an app's ``workflows.py``: the task workflow, when ``settings.TASKS`` uses the engine."""

from .tasks.workflow import TASK_WORKFLOW, tasks_configured

if tasks_configured():
    django_tasks = TASK_WORKFLOW
