from django.db import models

from .run import WorkflowRun
from .stage import WorkflowStage


class WorkflowAnnotation(models.Model):
    """A durable key/value fact about a run or stage (decisions, approvals, triggers...).

    ``(run, key, idempotency_key)`` is unique; rows with a NULL idempotency key never collide.
    """

    created_at = models.DateTimeField()
    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="annotations")
    stage = models.ForeignKey(
        WorkflowStage, on_delete=models.SET_NULL, null=True, blank=True, related_name="annotations"
    )
    attempt = models.PositiveIntegerField(default=0)
    scope = models.CharField(max_length=50, default="run")
    scope_id = models.CharField(max_length=200, null=True, blank=True)
    actor_kind = models.CharField(max_length=50, null=True, blank=True)
    actor_id = models.CharField(max_length=200, null=True, blank=True)
    actor_version = models.CharField(max_length=100, null=True, blank=True)
    key = models.CharField(max_length=200)
    value = models.JSONField()
    payload = models.JSONField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)

    class Meta:
        verbose_name = "workflow annotation"
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "key", "idempotency_key"], name="dwe_annotation_dedupe_uniq")
        ]
        indexes = [
            models.Index(fields=["run", "key"], name="dwe_annotation_key_idx"),
            models.Index(fields=["run", "created_at"], name="dwe_annotation_time_idx"),
            models.Index(fields=["run", "scope"], name="dwe_annotation_scope_idx"),
            models.Index(fields=["run", "actor_id"], name="dwe_annotation_actor_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.key}={self.value!r}"
