from __future__ import annotations

from django.apps import AppConfig


class WorkflowEngineConfig(AppConfig):
    name = "django_workflow_engine"
    verbose_name = "Workflow engine"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers system checks)
        from .registry import registry

        registry.autodiscover()
