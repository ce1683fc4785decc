"""The workflow engine's admin: editable schedules, read-only pages for runs, stages, jobs, logs, artifacts and AI calls, a cost report,
and the permission-checked cancel and rerun actions. Importing this package registers everything with
``django.contrib.admin.site`` (Django's admin autodiscovery imports it)."""

from .ai_calls import AICallAdmin
from .artifacts import WorkflowArtifactAdmin
from .dead_letters import OutboxEventAdmin
from .jobs import WorkflowJobAdmin
from .logs import WorkflowLogAdmin
from .runs import WorkflowRunAdmin
from .schedules import WorkflowScheduleAdmin
from .stages import WorkflowStageAdmin
from .workers import WorkflowWorkerAdmin

__all__ = [
    "AICallAdmin",
    "OutboxEventAdmin",
    "WorkflowArtifactAdmin",
    "WorkflowJobAdmin",
    "WorkflowLogAdmin",
    "WorkflowRunAdmin",
    "WorkflowScheduleAdmin",
    "WorkflowStageAdmin",
    "WorkflowWorkerAdmin",
]
