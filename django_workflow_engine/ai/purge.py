"""Old rows of AI traffic control, deleted by the maintenance loop: expired response cache entries and rate-limit
grants that left their window (a model no longer called keeps its last grants until then)."""

from __future__ import annotations

from datetime import datetime, timedelta


def purge_ai_traffic(now: datetime, limit: int = 1000) -> int:
    """Delete up to ``limit`` expired cache entries and up to ``limit`` old grants; returns rows deleted.

    Only when the features are configured (``AI_CACHE`` or ``AI_RATE_LIMITS``): otherwise no statement is run.
    Calls that pass ``cache=`` without the setting leave their entries until the next identical call replaces
    them, or until this runs once the setting is on.
    """
    from ..conf import settings
    from ..models import AIRateLimitGrant, AIResponseCache
    from .ratelimit import limiter_kind

    deleted = 0
    if settings.AI_CACHE:
        expired = AIResponseCache.objects.expired(now).order_by("expires_at").values("pk")[:limit]
        deleted += AIResponseCache.objects.filter(pk__in=list(expired.values_list("pk", flat=True))).delete()[0]
    if settings.AI_RATE_LIMITS and limiter_kind() == "database":
        cutoff = now - timedelta(seconds=float(settings.AI_RATE_LIMIT_WINDOW_SECONDS))
        old = AIRateLimitGrant.objects.filter(granted_at__lte=cutoff).order_by("granted_at")[:limit]
        deleted += AIRateLimitGrant.objects.filter(pk__in=list(old.values_list("pk", flat=True))).delete()[0]
    return deleted
