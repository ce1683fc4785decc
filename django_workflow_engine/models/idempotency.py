from django.db import models


class IdempotencyKey(models.Model):
    """The outcome of a command dispatched with an idempotency key.

    While the command runs, ``result`` holds the in-progress marker and ``created_at`` is when it was taken
    (kernel clock), which is what stale reclaim compares against. Keys are deleted with their run, and by
    the maintenance tick once older than ``IDEMPOTENCY_KEY_TTL_SECONDS``.
    """

    created_at = models.DateTimeField()
    key = models.CharField(max_length=255)
    command_type = models.CharField(max_length=40)
    result = models.JSONField()
    run_id = models.CharField(
        max_length=32, null=True, blank=True, help_text="The run the command created or acted on, once completed."
    )

    class Meta:
        verbose_name = "idempotency key"
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["key", "command_type"], name="dwe_idem_key_uniq")]
        indexes = [
            models.Index(fields=["created_at"], name="dwe_idem_created_idx"),
            models.Index(fields=["run_id"], name="dwe_idem_run_idx", condition=models.Q(run_id__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.command_type}:{self.key}"
