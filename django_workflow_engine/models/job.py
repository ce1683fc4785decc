from __future__ import annotations

from datetime import datetime

from django.db import models

from ..core.ids import new_id
from .run import WorkflowRun
from .status import Status


class WorkflowJobQuerySet(models.QuerySet):
    def pending(self) -> WorkflowJobQuerySet:
        return self.filter(status=Status.PENDING)

    def for_run(self, run_id: str) -> WorkflowJobQuerySet:
        return self.filter(run_id=run_id)

    def due(self, now: datetime) -> WorkflowJobQuerySet:
        """PENDING jobs whose not-before time has passed, in dequeue order."""
        return self.filter(status=Status.PENDING, available_at__lte=now).order_by("-priority", "created_at", "id")

    def running(self) -> WorkflowJobQuerySet:
        return self.filter(status=Status.RUNNING)

    def stale(self, cutoff: datetime) -> WorkflowJobQuerySet:
        """RUNNING jobs whose lease was last refreshed before ``cutoff``."""
        return self.filter(status=Status.RUNNING, locked_at__lt=cutoff)


class WorkflowJob(models.Model):
    """ "Execute stage S of run R": the unit a worker claims, leases and records."""

    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    # No index of its own: dwe_job_run_stage_idx leads with the run and serves every lookup by run.
    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="jobs", db_index=False)
    workflow_id = models.CharField(max_length=100)
    stage_id = models.CharField(max_length=100)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    priority = models.IntegerField(default=5)
    attempt = models.PositiveIntegerField(default=0, help_text="Deliveries so far (the first delivery is 1).")
    max_attempts = models.PositiveIntegerField(default=3)
    worker_id = models.CharField(max_length=200, null=True, blank=True)
    locked_at = models.DateTimeField(null=True, blank=True, help_text="Lease timestamp, refreshed by heartbeats.")
    available_at = models.DateTimeField(help_text="Not before: retry backoff or the next poll of a suspended job.")
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    payload = models.JSONField(default=dict)
    last_error = models.TextField(null=True, blank=True)
    wait_reason = models.CharField(
        max_length=200, null=True, blank=True, help_text="Why a deferred job is due later (an AI rate limit)."
    )

    objects = WorkflowJobQuerySet.as_manager()

    class Meta:
        verbose_name = "workflow job"
        ordering = ["created_at", "id"]
        indexes = [
            # The dequeue query filters PENDING + available_at <= now and orders by (-priority, created_at, id):
            # one ordered scan of this partial index, with available_at checked inside the index.
            models.Index(
                fields=["-priority", "created_at", "id", "available_at"],
                name="dwe_job_dequeue_idx",
                condition=models.Q(status="PENDING"),
            ),
            models.Index(fields=["locked_at"], name="dwe_job_lease_idx", condition=models.Q(status="RUNNING")),
            models.Index(fields=["run", "stage_id"], name="dwe_job_run_stage_idx"),
            # A map's item taking the next one of its run (claim_item): one ordered scan of this run's PENDING jobs.
            models.Index(
                fields=["run", "created_at", "id"], name="dwe_job_run_pending_idx", condition=models.Q(status="PENDING")
            ),
        ]

    def __str__(self) -> str:
        return f"job {self.stage_id} of {self.run_id} ({self.status}, attempt {self.attempt})"
