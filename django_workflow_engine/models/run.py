from __future__ import annotations

from django.db import models

from ..core.ids import new_id, short_id
from .status import TERMINAL, Status

# Money columns: up to 10 integer digits and 10 decimals (sub-cent token prices add up exactly).
MONEY_DIGITS = 20
MONEY_PLACES = 10


class WorkflowRunQuerySet(models.QuerySet):
    def running(self) -> WorkflowRunQuerySet:
        return self.filter(status=Status.RUNNING)

    def pending(self) -> WorkflowRunQuerySet:
        return self.filter(status=Status.PENDING)

    def finished(self) -> WorkflowRunQuerySet:
        return self.filter(status__in=TERMINAL)

    def waiting_for_slot(self) -> WorkflowRunQuerySet:
        """PENDING runs held back by their workflow's concurrency limit."""
        return self.filter(status=Status.PENDING, concurrency_key__isnull=False)

    def for_workflow(self, workflow_id: str) -> WorkflowRunQuerySet:
        return self.filter(workflow_id=workflow_id)


class WorkflowRun(models.Model):
    """One execution of a workflow."""

    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    version = models.PositiveIntegerField(default=1)
    workflow_id = models.CharField(max_length=100)
    workflow_name = models.CharField(max_length=200)
    workflow_type = models.CharField(max_length=100)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    priority = models.IntegerField(default=5)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.BigIntegerField(null=True, blank=True)
    input = models.JSONField()
    output = models.JSONField(null=True, blank=True)
    config = models.JSONField(default=dict)
    total_cost = models.DecimalField(default=0, max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES)
    total_tokens = models.BigIntegerField(default=0)
    max_cost = models.DecimalField(null=True, blank=True, max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES)
    metadata = models.JSONField(null=True, blank=True)
    event_seq = models.PositiveIntegerField(default=0, help_text="Last outbox sequence number used by this run.")
    trace_context = models.JSONField(
        null=True,
        blank=True,
        help_text="W3C trace context (traceparent) of the span that started the run, when TRACING is on.",
    )

    concurrency_key = models.CharField(
        max_length=255,
        null=True,
        blank=True,
        help_text="Key of the workflow's concurrency limit ('' = the whole workflow); NULL: not limited. "
        "A PENDING run with a key waits for a slot.",
    )
    deadline_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The run fails with 'deadline exceeded' if it has not finished by then; NULL: no deadline.",
    )
    # A child run started by a stage (ctx.start_child). Plain ids, not foreign keys: a parent purged before
    # its children leaves them readable.
    parent_run_id = models.CharField(max_length=32, null=True, blank=True, help_text="The run that started this one.")
    parent_stage_id = models.CharField(
        max_length=32, null=True, blank=True, help_text="The stage record (of the parent run) that started this one."
    )
    child_key = models.CharField(
        max_length=200, null=True, blank=True, help_text="The key the parent stage started this child under."
    )

    scheduled_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="A delayed start (engine.start(start_at=..., delay=...)): its first group is not due before this.",
    )

    objects = WorkflowRunQuerySet.as_manager()

    class Meta:
        verbose_name = "workflow run"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "-priority", "created_at"], name="dwe_run_claim_idx"),
            models.Index(fields=["workflow_id", "-created_at"], name="dwe_run_workflow_idx"),
            models.Index(fields=["-created_at"], name="dwe_run_created_idx"),
            models.Index(fields=["status", "updated_at"], name="dwe_run_activity_idx"),
            models.Index(
                fields=["workflow_id", "concurrency_key", "status", "-priority", "created_at"],
                name="dwe_run_slot_idx",
                condition=models.Q(concurrency_key__isnull=False),
            ),
            models.Index(
                fields=["parent_stage_id", "created_at"],
                name="dwe_run_children_idx",
                condition=models.Q(parent_stage_id__isnull=False),
            ),
            models.Index(
                fields=["parent_run_id"],
                name="dwe_run_parent_idx",
                condition=models.Q(parent_run_id__isnull=False),
            ),
            models.Index(
                fields=["deadline_at"],
                name="dwe_run_deadline_idx",
                condition=models.Q(deadline_at__isnull=False, status__in=["PENDING", "RUNNING", "SUSPENDED"]),
            ),
        ]
        permissions = [
            ("cancel_workflowrun", "Can cancel workflow runs"),
            ("rerun_workflowrun", "Can rerun workflow runs"),
            ("signal_workflowrun", "Can answer workflow runs waiting for a signal"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id} {short_id(self.id)} ({self.status})"

    @property
    def short_id(self) -> str:
        return short_id(self.id)

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL
