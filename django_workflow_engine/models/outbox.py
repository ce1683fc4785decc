from django.db import models


class OutboxEvent(models.Model):
    """An event recorded in the same transaction as the change it describes, published later in per-run order."""

    created_at = models.DateTimeField(help_text="Set to the event's occurred_at (the kernel clock).")
    run_id = models.CharField(max_length=32)
    sequence = models.PositiveIntegerField()
    event_type = models.CharField(max_length=40)
    payload = models.JSONField()
    causation_id = models.CharField(max_length=255, help_text="The idempotency key of the command, or a UUID.")
    occurred_at = models.DateTimeField()
    published_at = models.DateTimeField(null=True, blank=True)
    retry_count = models.PositiveIntegerField(default=0)
    dlq_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(null=True, blank=True, help_text="The last delivery error (exception and message).")

    class Meta:
        verbose_name = "outbox event"
        ordering = ["run_id", "sequence"]
        constraints = [models.UniqueConstraint(fields=["run_id", "sequence"], name="dwe_outbox_run_seq_uniq")]
        indexes = [
            models.Index(
                fields=["run_id", "sequence"],
                name="dwe_outbox_unpublished_idx",
                condition=models.Q(published_at__isnull=True, dlq_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} #{self.sequence} of {self.run_id}"
