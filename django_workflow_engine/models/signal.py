"""``WorkflowSignal``: a signal delivered to a run (``engine.signal``), kept until a stage consumes it."""

from django.db import models

from ..core.ids import new_id
from .run import WorkflowRun


class WorkflowSignal(models.Model):
    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="signals")
    name = models.CharField(max_length=100)
    payload = models.JSONField(help_text="Validated by the output model of the stage that waits for the signal.")
    actor = models.CharField(max_length=200, null=True, blank=True, help_text="Who or what sent it.")
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    received_at = models.DateTimeField()
    consumed_at = models.DateTimeField(null=True, blank=True)
    consumed_by = models.CharField(
        max_length=32, null=True, blank=True, help_text="The stage record that completed with this signal."
    )

    class Meta:
        verbose_name = "workflow signal"
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "idempotency_key"],
                name="dwe_signal_idempotency_uniq",
                condition=models.Q(idempotency_key__isnull=False),
            )
        ]
        indexes = [models.Index(fields=["run", "name", "received_at"], name="dwe_signal_inbox_idx")]

    def __str__(self) -> str:
        return f"{self.name} → {self.run_id}"
