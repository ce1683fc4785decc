"""Outbox events, and the dead letters among them (events that failed their plugins): the last error and a
replay action (``change_outboxevent`` permission)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.utils import timezone
from django.utils.text import Truncator

from ..models import OutboxEvent
from .common import ReadOnlyAdmin, badge, pretty_json, run_link

EVENT_COLORS = {
    "dead letter": ("#a61b1b", "#fbe4e4"),
    "pending": ("#8a5a00", "#fdf1d8"),
    "published": ("#1e7b34", "#e3f4e7"),
}


def event_state(event: OutboxEvent) -> str:
    if event.dlq_at is not None:
        return "dead letter"
    return "published" if event.published_at is not None else "pending"


class EventStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [("dead", "Dead letters"), ("pending", "Pending"), ("published", "Published")]

    def queryset(self, request: Any, queryset: Any) -> Any:
        if self.value() == "dead":
            return queryset.filter(dlq_at__isnull=False)
        if self.value() == "pending":
            return queryset.filter(dlq_at__isnull=True, published_at__isnull=True)
        if self.value() == "published":
            return queryset.filter(published_at__isnull=False)
        return queryset


@admin.action(description="Replay selected dead letters", permissions=["replay"])
def replay_selected(modeladmin: OutboxEventAdmin, request: HttpRequest, queryset: Any) -> None:
    from ..facade import engine
    from ..ops.dead_letters import replay

    if not modeladmin.has_replay_permission(request):
        raise PermissionDenied
    ids = list(queryset.filter(dlq_at__isnull=False).values_list("pk", flat=True))
    replayed = replay(engine.kernel, ids)
    skipped = queryset.count() - replayed
    text = f"{replayed} event(s) will be delivered again at the next outbox flush."
    if skipped:
        text += f" {skipped} selected event(s) were not dead letters and were left as they are."
    modeladmin.message_user(request, text, messages.SUCCESS if replayed else messages.WARNING)


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin):
    list_display = ("event_type", "run_col", "sequence", "state_badge", "retry_count", "dead_at", "short_error")
    list_display_links = ("event_type",)
    list_filter = (EventStateFilter, "event_type")
    search_fields = ("=run_id",)
    search_help_text = "A full run id."
    ordering = ("-id",)
    actions = [replay_selected]
    fields = (
        "run_col",
        "event_type",
        "sequence",
        "state_badge",
        "occurred_at",
        "published_at",
        "retry_count",
        "dlq_at",
        "last_error",
        "payload_json",
    )
    readonly_fields = fields

    def has_replay_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_outboxevent")

    @admin.display(description="run", ordering="run_id")
    def run_col(self, obj: OutboxEvent) -> Any:
        return run_link(obj.run_id)

    @admin.display(description="state")
    def state_badge(self, obj: OutboxEvent) -> Any:
        return badge(event_state(obj), EVENT_COLORS)

    @admin.display(description="dead-lettered", ordering="dlq_at")
    def dead_at(self, obj: OutboxEvent) -> str:
        return f"{timezone.localtime(obj.dlq_at):%Y-%m-%d %H:%M:%S}" if obj.dlq_at else "—"

    @admin.display(description="last error")
    def short_error(self, obj: OutboxEvent) -> str:
        return Truncator((obj.last_error or "").strip().split("\n")[0]).chars(120) or "—"

    @admin.display(description="payload")
    def payload_json(self, obj: OutboxEvent) -> Any:
        return pretty_json(obj.payload)
