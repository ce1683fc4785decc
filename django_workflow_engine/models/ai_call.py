from django.db import models

from .ai_call_queries import AICallQuerySet
from .run import MONEY_DIGITS, MONEY_PLACES, WorkflowRun
from .stage import WorkflowStage


class AICall(models.Model):
    """One provider call (text, object, embed, stream, batch, tool). ``cost`` NULL means unpriced.

    Calls made inside a stage carry a ``call_key``; a re-execution of the stage making the same call is given
    the recorded result (``replay``) instead of calling the provider again.
    """

    created_at = models.DateTimeField()
    topic = models.CharField(max_length=300)
    call_type = models.CharField(max_length=10)
    model_key = models.CharField(max_length=200)
    model_id = models.CharField(max_length=200)
    prompt = models.TextField(null=True, blank=True)
    response = models.TextField(null=True, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(null=True, blank=True, max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(null=True, blank=True)
    is_batch = models.BooleanField(default=False)
    metadata = models.JSONField(null=True, blank=True)
    run = models.ForeignKey(WorkflowRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="ai_calls")
    stage = models.ForeignKey(WorkflowStage, on_delete=models.SET_NULL, null=True, blank=True, related_name="ai_calls")
    # Copied from the run and stage when the call is recorded: the cost report groups by them without joining
    # (and a call keeps its attribution when its run is deleted).
    workflow_id = models.CharField(
        max_length=100, null=True, blank=True, help_text="The run's workflow id (``WorkflowRun.workflow_id``)."
    )
    stage_key = models.CharField(
        max_length=100,
        null=True,
        blank=True,
        help_text="The stage's id in its workflow definition (``WorkflowStage.stage_id``).",
    )
    call_key = models.CharField(
        max_length=120,
        null=True,
        blank=True,
        help_text="Logical key of a call made inside a stage (scope:ordinal:request hash); see ai/journal.py.",
    )
    cached = models.BooleanField(
        default=False, help_text="Answered from the response cache (AI_CACHE): no provider call, cost 0."
    )
    saved_cost = models.DecimalField(
        null=True,
        blank=True,
        max_digits=MONEY_DIGITS,
        decimal_places=MONEY_PLACES,
        help_text="A cached answer: what the provider call it replaced cost.",
    )
    replay = models.JSONField(
        null=True, blank=True, help_text="What a re-execution of the stage is given back; dropped when it is done."
    )

    objects = models.Manager.from_queryset(AICallQuerySet)()

    class Meta:
        verbose_name = "AI call"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["created_at"], name="dwe_aicall_created_idx"),
            models.Index(fields=["model_id", "created_at"], name="dwe_aicall_model_idx"),
            models.Index(fields=["run"], name="dwe_aicall_run_idx"),
            models.Index(fields=["topic"], name="dwe_aicall_topic_idx"),
            models.Index(fields=["call_type", "created_at"], name="dwe_aicall_type_idx"),
        ]
        constraints = [
            # One row per logical call of a stage: of two concurrent executions, one records it.
            models.UniqueConstraint(
                fields=["stage", "call_key"],
                condition=models.Q(call_key__isnull=False),
                name="dwe_aicall_stage_key_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.call_type} {self.model_id} ({self.input_tokens}+{self.output_tokens} tokens)"
