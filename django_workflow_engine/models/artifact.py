from django.db import models
from django.utils import timezone

from .run import WorkflowRun
from .stage import WorkflowStage


class WorkflowArtifact(models.Model):
    """A named JSON value kept with a run (stage outputs and artifacts themselves live in blob storage)."""

    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="artifacts")
    stage = models.ForeignKey(WorkflowStage, on_delete=models.SET_NULL, null=True, blank=True, related_name="artifacts")
    key = models.CharField(max_length=500)
    type = models.CharField(max_length=20, default="ARTIFACT")
    data = models.JSONField()
    size = models.PositiveIntegerField(default=0)
    metadata = models.JSONField(null=True, blank=True)

    class Meta:
        verbose_name = "workflow artifact"
        ordering = ["run", "key"]
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="dwe_artifact_run_key_uniq")]

    def __str__(self) -> str:
        return self.key
