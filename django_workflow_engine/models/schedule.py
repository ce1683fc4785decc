"""``WorkflowSchedule``: start a workflow on a cron expression or an interval (fired by maintenance)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import models

from ..core.schedule import Timing


class WorkflowSchedule(models.Model):
    """A workflow started on a cron expression (in ``timezone``) or every ``interval_seconds``.

    ``runmaintenance`` (and the serverless maintenance tick) fires it: one run per fire time, whose
    idempotency key is ``schedule:<name>:<fire time>``, so two maintenance processes or a restart mid-tick
    never start a second one. ``declared``: the definition from code this row was last synced from (``None``
    for a schedule made in the admin); a row that differs from it was changed by an operator and is left alone.
    """

    class Catchup(models.TextChoices):
        SKIP = "skip", "skip missed fire times"
        LATEST = "latest", "fire the latest missed one"
        ALL = "all", "fire every missed one (up to the limit)"

    name = models.SlugField(max_length=100, unique=True, help_text="Unique; part of every fired run's key.")
    workflow_id = models.CharField(max_length=100)
    cron = models.CharField(
        max_length=200, blank=True, default="", help_text="Five fields, e.g. '0 2 * * *'; or give an interval."
    )
    interval_seconds = models.PositiveIntegerField(null=True, blank=True, help_text="Instead of a cron expression.")
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA name the cron expression is read in.")
    input = models.JSONField(default=dict, blank=True)
    config = models.JSONField(default=dict, blank=True)
    priority = models.IntegerField(default=5)
    enabled = models.BooleanField(default=True)
    catchup = models.CharField(
        max_length=10,
        choices=Catchup.choices,
        default=Catchup.SKIP,
        help_text="What a tick does with fire times missed while maintenance was not running.",
    )
    catchup_limit = models.PositiveIntegerField(default=10, help_text="At most this many missed runs (policy 'all').")
    next_fire_at = models.DateTimeField(null=True, blank=True)
    last_fire_at = models.DateTimeField(null=True, blank=True)
    last_run = models.ForeignKey(
        "django_workflow_engine.WorkflowRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    declared = models.JSONField(
        null=True, blank=True, editable=False, help_text="The code definition last synced (NULL: made here)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "workflow schedule"
        ordering = ["name"]
        indexes = [models.Index(fields=["enabled", "next_fire_at"], name="dwe_schedule_due_idx")]

    def __str__(self) -> str:
        return self.name

    @property
    def timing(self) -> Timing:
        return Timing(cron=self.cron, interval_seconds=self.interval_seconds, timezone=self.timezone)

    @property
    def every(self) -> str:
        """The timing in words: ``cron '0 2 * * *' (Europe/Berlin)`` or ``every 60 s``."""
        if self.cron:
            return f"cron {self.cron!r} ({self.timezone})"
        return f"every {self.interval_seconds} s"

    def preview(self, after: datetime, count: int = 5) -> list[datetime]:
        return self.timing.preview(after, count)

    def runs(self) -> Any:
        """The runs this schedule started, newest first."""
        from .run import WorkflowRun

        return WorkflowRun.objects.filter(metadata__schedule=self.name)
