from __future__ import annotations

from django.apps import AppConfig


class WorkflowEngineConfig(AppConfig):
    name = "django_workflow_engine"
    verbose_name = "Workflow engine"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers system checks)
        from .adapters import deletion
        from .ai import checks as ai_checks  # noqa: F401  (the AI traffic settings' checks)
        from .ai.journal import on_workflow_event
        from .registry import registry
        from .signals import workflow_event

        # Drops the AI call journal's replay data once a run (or, with prompt logging off, a stage) is done.
        workflow_event.connect(on_workflow_event, dispatch_uid="django_workflow_engine.ai.journal")
        # Deleting a run also deletes its outbox events, idempotency keys and blob files.
        deletion.connect()
        registry.autodiscover()
