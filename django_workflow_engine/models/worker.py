"""The workers registry: one row per worker process, upserted by its lease keeper's beat."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models


class WorkflowWorkerQuerySet(models.QuerySet):
    def alive(self, now: datetime, grace: float) -> WorkflowWorkerQuerySet:
        """Workers that beat within ``grace`` seconds and did not say they stopped."""
        return self.filter(stopped_at__isnull=True, heartbeat_at__gte=now - timedelta(seconds=grace))

    def gone(self, now: datetime, grace: float) -> WorkflowWorkerQuerySet:
        """Workers that stopped, or whose last beat is older than ``grace`` seconds (killed, lost)."""
        return self.exclude(pk__in=self.alive(now, grace).values("pk"))


class WorkflowWorker(models.Model):
    """A worker process as it last reported itself (``manage.py runworker``)."""

    id = models.CharField(primary_key=True, max_length=200, help_text="The lease holder id (default host:pid).")
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list)
    transport = models.CharField(max_length=20)
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField(help_text="Last beat of the worker's lease keeper.")
    stopped_at = models.DateTimeField(null=True, blank=True, help_text="Set when the worker exited cleanly.")
    job_id = models.CharField(max_length=32, null=True, blank=True, help_text="The job in hand at the last beat.")
    run_id = models.CharField(max_length=32, null=True, blank=True)
    workflow_id = models.CharField(max_length=100, null=True, blank=True)
    stage_id = models.CharField(max_length=100, null=True, blank=True)
    stages_done = models.PositiveIntegerField(default=0, help_text="Stage executions finished, at the last beat.")

    objects = WorkflowWorkerQuerySet.as_manager()

    class Meta:
        verbose_name = "worker"
        ordering = ["-heartbeat_at", "id"]
        indexes = [models.Index(fields=["heartbeat_at"], name="dwe_worker_heartbeat_idx")]

    def __str__(self) -> str:
        return self.id
