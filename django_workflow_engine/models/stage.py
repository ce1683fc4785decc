from __future__ import annotations

from datetime import datetime

from django.db import models

from ..core.ids import new_id
from .run import WorkflowRun
from .status import TERMINAL, Status


class WorkflowStageQuerySet(models.QuerySet):
    def for_run(self, run_id: str) -> WorkflowStageQuerySet:
        return self.filter(run_id=run_id)

    def current(self) -> WorkflowStageQuerySet:
        """The records of each run's current generation (those no rerun has superseded)."""
        return self.filter(superseded_at__isnull=True)

    def superseded(self) -> WorkflowStageQuerySet:
        """Earlier generations' records, kept read-only as history."""
        return self.filter(superseded_at__isnull=False)

    def open(self) -> WorkflowStageQuerySet:
        """Stages not yet COMPLETED, FAILED or CANCELLED."""
        return self.exclude(status__in=TERMINAL)

    def suspended_due(self, now: datetime) -> WorkflowStageQuerySet:
        """Current SUSPENDED stages whose next poll is due, oldest first."""
        return self.filter(status=Status.SUSPENDED, next_poll_at__lte=now, superseded_at__isnull=True).order_by(
            "next_poll_at", "id"
        )


class CurrentStageManager(models.Manager.from_queryset(WorkflowStageQuerySet)):  # type: ignore[misc]
    """``WorkflowStage.objects``: the current generation only, so ``run.stages``, the admin and user code read
    "the stages of a run" without repeating the filter. ``WorkflowStage.all_generations`` reads history too."""

    def get_queryset(self) -> WorkflowStageQuerySet:
        return super().get_queryset().filter(superseded_at__isnull=True)


class WorkflowStage(models.Model):
    """One stage of one run, in one generation: a rerun supersedes the records of the groups it runs again
    (they stay, read-only, with their logs, AI calls and outputs) and creates new ones."""

    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    version = models.PositiveIntegerField(default=1)
    # No index of its own: dwe_stage_activity_idx leads with the run and serves every lookup by run.
    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="stages", db_index=False)
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
    superseded_at = models.DateTimeField(
        null=True, blank=True, help_text="When a rerun replaced this record (NULL: the current generation)."
    )
    superseded_by = models.CharField(
        max_length=200, null=True, blank=True, help_text="Who asked for the rerun that replaced this record."
    )

    item_index = models.PositiveIntegerField(
        null=True, blank=True, help_text="An item of a map stage: its index in the list mapped over."
    )
    item = models.JSONField(null=True, blank=True, help_text="An item of a map stage: its input.")

    objects = CurrentStageManager()
    all_generations = WorkflowStageQuerySet.as_manager()

    class Meta:
        verbose_name = "workflow stage"
        ordering = ["execution_group", "stage_number"]
        constraints = [
            # One current record per stage of a run; superseded generations may repeat it.
            models.UniqueConstraint(
                fields=["run", "stage_id"],
                condition=models.Q(superseded_at__isnull=True),
                name="dwe_stage_run_stage_uniq",
            )
        ]
        indexes = [
            models.Index(fields=["next_poll_at"], name="dwe_stage_poll_idx", condition=models.Q(status="SUSPENDED")),
            models.Index(fields=["status"], name="dwe_stage_status_idx"),
            models.Index(fields=["run", "updated_at"], name="dwe_stage_activity_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.stage_id} ({self.status})"

    @property
    def output(self):
        """The stored output when it is inline (small outputs); ``None`` otherwise."""
        return (self.output_data or {}).get("value")
