from django.db import models

from .run import WorkflowRun
from .stage import WorkflowStage


class WorkflowLog(models.Model):
    class Level(models.TextChoices):
        DEBUG = "DEBUG"
        INFO = "INFO"
        WARN = "WARN"
        ERROR = "ERROR"

    created_at = models.DateTimeField()
    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, null=True, blank=True, related_name="logs")
    stage = models.ForeignKey(WorkflowStage, on_delete=models.CASCADE, null=True, blank=True, related_name="logs")
    level = models.CharField(max_length=5, choices=Level.choices)
    message = models.TextField()
    metadata = models.JSONField(null=True, blank=True)

    class Meta:
        verbose_name = "workflow log"
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["run", "created_at"], name="dwe_log_run_idx"),
            models.Index(fields=["stage"], name="dwe_log_stage_idx"),
            models.Index(fields=["level", "created_at"], name="dwe_log_level_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.level}: {self.message[:80]}"
