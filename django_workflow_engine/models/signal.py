from django.db import models

from .run import WorkflowRun
from .stage import WorkflowStage


class WorkflowSignal(models.Model):
    """A signal delivered to a run (a person's answer, a webhook): kept until the stage waiting for ``name``
    consumes it; ``consumed_by`` is that stage record. ``(run, idempotency_key)`` is unique."""

    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="signals")
    name = models.CharField(max_length=100)
    payload = models.JSONField()
    actor = models.CharField(max_length=200, null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    received_at = models.DateTimeField()
    consumed_by = models.ForeignKey(
        WorkflowStage, on_delete=models.SET_NULL, null=True, blank=True, related_name="signals"
    )
    consumed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "workflow signal"
        ordering = ["received_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="dwe_signal_run_key_uniq",
            )
        ]
        indexes = [models.Index(fields=["run", "name"], name="dwe_signal_run_name_idx")]

    def __str__(self) -> str:
        return f"{self.name} -> {self.run_id}"
