"""The database rate limiter (any transport): a sliding window log in ``AIRateLimitGrant`` rows.

One short transaction per request. Its first statement updates the model's ``AIRateLimitBucket`` row, which
takes that row's lock (PostgreSQL) or the write lock (SQLite), so grants of one model are serialized across
every process and machine while other models' grants go on; then it deletes the grants that left the window,
counts what is left and inserts the new grant if it fits. Four statements per granted request, and one more
to correct the token estimate after the call when the limit counts tokens.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models import Count, Sum
from django.utils import timezone

from .ratelimit import Grant, Limit


class DatabaseRateLimiter:
    """:class:`~django_workflow_engine.ai.ratelimit.RateLimiter` over the default database."""

    def acquire(self, bucket: str, limit: Limit, tokens: int, window: float) -> Grant:
        from ..models import AIRateLimitBucket, AIRateLimitGrant

        with transaction.atomic():
            if not AIRateLimitBucket.objects.filter(name=bucket).update(used_at=timezone.now()):
                AIRateLimitBucket.objects.bulk_create([AIRateLimitBucket(name=bucket)], ignore_conflicts=True)
                AIRateLimitBucket.objects.filter(name=bucket).update(used_at=timezone.now())
            # Read the clock only once the bucket is ours: grant times then follow grant order.
            now = timezone.now()
            cutoff = now - timedelta(seconds=window)
            grants = AIRateLimitGrant.objects.filter(bucket=bucket)
            grants.filter(granted_at__lte=cutoff).delete()
            totals = grants.aggregate(n=Count("id"), tokens=Sum("tokens"))
            count, used = totals["n"], totals["tokens"] or 0
            wait_until = None
            if limit.rpm is not None and count + 1 > limit.rpm:
                # The grant whose expiry leaves room for one more.
                oldest = grants.order_by("granted_at", "id").values_list("granted_at", flat=True)[count - limit.rpm]
                wait_until = oldest + timedelta(seconds=window)
            if limit.tpm is not None and used > 0 and used + tokens > limit.tpm:
                freed, room_at = 0, now
                for at, amount in grants.order_by("granted_at", "id").values_list("granted_at", "tokens"):
                    freed, room_at = freed + amount, at
                    if used - freed + tokens <= limit.tpm:
                        break
                candidate = room_at + timedelta(seconds=window)
                wait_until = max(wait_until, candidate) if wait_until else candidate
            if wait_until is not None:
                return Grant(False, wait_seconds=max((wait_until - now).total_seconds(), 0.001))
            row = AIRateLimitGrant.objects.create(bucket=bucket, granted_at=now, tokens=tokens)
        return Grant(True, at=now, ticket=str(row.pk))

    def correct(self, bucket: str, ticket: str, tokens: int, window: float) -> None:
        from ..models import AIRateLimitGrant

        AIRateLimitGrant.objects.filter(pk=int(ticket)).update(tokens=max(tokens, 0))
