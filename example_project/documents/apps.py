from django.apps import AppConfig


class DocumentsConfig(AppConfig):
    """The example app: its ``workflows.py`` is autodiscovered by django_workflow_engine."""

    name = "documents"
    verbose_name = "Documents (example)"
    default_auto_field = "django.db.models.BigAutoField"
