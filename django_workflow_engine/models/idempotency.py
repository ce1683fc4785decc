from django.db import models


class IdempotencyKey(models.Model):
    """The outcome of a command dispatched with an idempotency key.

    While the command runs, ``result`` holds the in-progress marker and ``created_at`` is when it was taken
    (kernel clock), which is what stale reclaim compares against.
    """

    created_at = models.DateTimeField()
    key = models.CharField(max_length=255)
    command_type = models.CharField(max_length=40)
    result = models.JSONField()

    class Meta:
        verbose_name = "idempotency key"
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["key", "command_type"], name="dwe_idem_key_uniq")]

    def __str__(self) -> str:
        return f"{self.command_type}:{self.key}"
