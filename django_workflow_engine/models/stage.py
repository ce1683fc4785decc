from __future__ import annotations

from datetime import datetime

from django.db import models

from ..core.ids import new_id
from .run import WorkflowRun
from .status import TERMINAL, Status


class WorkflowStageQuerySet(models.QuerySet):
    def for_run(self, run_id: str) -> WorkflowStageQuerySet:
        return self.filter(run_id=run_id)

    def open(self) -> WorkflowStageQuerySet:
        """Stages not yet COMPLETED, FAILED or CANCELLED."""
        return self.exclude(status__in=TERMINAL)

    def suspended_due(self, now: datetime) -> WorkflowStageQuerySet:
        """SUSPENDED stages whose next poll is due, oldest first."""
        return self.filter(status=Status.SUSPENDED, next_poll_at__lte=now).order_by("next_poll_at", "id")


class WorkflowStage(models.Model):
    """One stage of one run (a rerun replaces the records of the rerun groups)."""

    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    version = models.PositiveIntegerField(default=1)
    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="stages")
    stage_id = models.CharField(max_length=100)
    stage_name = models.CharField(max_length=200)
    stage_number = models.PositiveIntegerField()
    execution_group = models.PositiveIntegerField()
    attempt = models.PositiveIntegerField(default=0, help_text="Rerun generation (0 = original).")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.BigIntegerField(null=True, blank=True)
    output_data = models.JSONField(null=True, blank=True)
    config = models.JSONField(null=True, blank=True)
    suspended_state = models.JSONField(null=True, blank=True)
    next_poll_at = models.DateTimeField(null=True, blank=True)
    poll_interval_ms = models.BigIntegerField(null=True, blank=True)
    max_wait_until = models.DateTimeField(null=True, blank=True)
    metrics = models.JSONField(null=True, blank=True)
    error_message = models.TextField(null=True, blank=True)

    objects = WorkflowStageQuerySet.as_manager()

    class Meta:
        verbose_name = "workflow stage"
        ordering = ["execution_group", "stage_number"]
        constraints = [models.UniqueConstraint(fields=["run", "stage_id"], name="dwe_stage_run_stage_uniq")]
        indexes = [
            models.Index(fields=["next_poll_at"], name="dwe_stage_poll_idx", condition=models.Q(status="SUSPENDED")),
            models.Index(fields=["status"], name="dwe_stage_status_idx"),
            models.Index(fields=["run", "updated_at"], name="dwe_stage_activity_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.stage_id} ({self.status})"

    @property
    def output(self):  # type: ignore[no-untyped-def]
        """The stored output when it is inline (small outputs); ``None`` otherwise."""
        return (self.output_data or {}).get("value")
