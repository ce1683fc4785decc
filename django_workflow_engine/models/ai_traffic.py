"""Rows behind AI traffic control: the database rate limiter's grants and the response cache."""

from __future__ import annotations

from datetime import datetime

from django.db import models

from .run import MONEY_DIGITS, MONEY_PLACES


class AIRateLimitBucket(models.Model):
    """One rate-limited model: its row is locked (updated) by every grant, so grants of one model from any
    number of processes are serialized (``ai/ratelimit_db.py``)."""

    name = models.CharField(primary_key=True, max_length=200)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "AI rate limit bucket"

    def __str__(self) -> str:
        return self.name


class AIRateLimitGrant(models.Model):
    """One request let through a rate limit, with its tokens (estimated, then corrected). Grants older than
    the limit's window are deleted by the next grant of the same bucket."""

    bucket = models.CharField(max_length=200)
    granted_at = models.DateTimeField()
    tokens = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "AI rate limit grant"
        indexes = [models.Index(fields=["bucket", "granted_at"], name="dwe_airate_bucket_idx")]

    def __str__(self) -> str:
        return f"{self.bucket} at {self.granted_at:%H:%M:%S.%f} ({self.tokens} tokens)"


class AIResponseCacheQuerySet(models.QuerySet):
    def live(self, now: datetime) -> AIResponseCacheQuerySet:
        return self.filter(expires_at__gt=now)

    def expired(self, now: datetime) -> AIResponseCacheQuerySet:
        return self.filter(expires_at__lte=now)


class AIResponseCache(models.Model):
    """A provider answer kept for identical requests (``AI_CACHE`` / ``cache=``), keyed by the SHA-256 of the
    call type, model, messages and parameters."""

    key = models.CharField(primary_key=True, max_length=64)
    call_type = models.CharField(max_length=10)
    model_id = models.CharField(max_length=200, help_text="The model that answered.")
    payload = models.JSONField()
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(null=True, blank=True, max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    objects = AIResponseCacheQuerySet.as_manager()

    class Meta:
        verbose_name = "AI response cache entry"
        verbose_name_plural = "AI response cache"
        indexes = [models.Index(fields=["expires_at"], name="dwe_aicache_expires_idx")]

    def __str__(self) -> str:
        return f"{self.call_type} {self.model_id} until {self.expires_at:%Y-%m-%d %H:%M}"
