"""AI calls: the list (with totals for the current filter) and the URLs of the cost report."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import connection
from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.urls import path, reverse

from ..adapters.statements import distinct_model_ids
from ..models import AICall
from . import views
from .common import ReadOnlyAdmin, RunFilter, fmt_cost, fmt_int, pretty_json, run_link

MAX_MODEL_CHOICES = 200
CALL_TYPES = ("text", "object", "embed", "stream", "batch", "tool")
STAGE_HEAVY = ("stage__output_data", "stage__config", "stage__suspended_state", "stage__metrics")


class CallTypeFilter(admin.SimpleListFilter):
    """The call types the AI helper records (a fixed list: no ``SELECT DISTINCT`` over every call)."""

    title = "call type"
    parameter_name = "call_type"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [(t, t) for t in CALL_TYPES]

    def queryset(self, request: Any, queryset: Any) -> Any:
        return queryset.filter(call_type=self.value()) if self.value() else queryset


class ModelFilter(admin.SimpleListFilter):
    """Distinct model ids by a "loose index scan": one recursive query that jumps from one model id to the next
    through the ``(model_id, created_at)`` index, instead of ``SELECT DISTINCT`` reading every call."""

    title = "model"
    parameter_name = "model_id"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        with connection.cursor() as cursor:
            cursor.execute(*distinct_model_ids(AICall._meta.db_table, MAX_MODEL_CHOICES))
            return [(row[0], row[0]) for row in cursor.fetchall()]

    def queryset(self, request: Any, queryset: Any) -> Any:
        return queryset.filter(model_id=self.value()) if self.value() else queryset


def totals(queryset: Any) -> dict[str, Any]:
    """Calls, tokens and cost of ``queryset`` in one aggregate query (unpriced calls counted, not summed)."""
    agg = queryset.order_by().aggregate(
        calls=Count("pk"),
        in_tokens=Sum("input_tokens"),
        out_tokens=Sum("output_tokens"),
        total_cost=Sum("cost"),
        unpriced=Count("pk", filter=Q(cost__isnull=True)),
    )
    return {
        "calls": fmt_int(agg["calls"]),
        "input_tokens": fmt_int(agg["in_tokens"] or 0),
        "output_tokens": fmt_int(agg["out_tokens"] or 0),
        "cost": fmt_cost(agg["total_cost"] or 0),
        "unpriced": agg["unpriced"],
        "raw": agg,
    }


@admin.register(AICall)
class AICallAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "model_id",
        "call_type",
        "topic",
        "run_col",
        "stage_col",
        "tokens",
        "cost_col",
        "latency",
    )
    list_display_links = ("created_at",)
    list_filter = (ModelFilter, CallTypeFilter, ("created_at", admin.DateFieldListFilter), "is_batch", RunFilter)
    list_select_related = ("stage",)
    search_fields = ("=model_id", "=topic")
    search_help_text = "An exact model id or topic."
    ordering = ("-created_at", "-id")
    list_per_page = 100
    change_list_template = "admin/django_workflow_engine/aicall/change_list.html"
    changelist_defer = ("prompt", "response", "metadata", "error", *STAGE_HEAVY)
    fields = (
        "created_at",
        "model_key",
        "model_id",
        "call_type",
        "topic",
        "is_batch",
        "run_col",
        "stage_col",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "cost_col",
        "latency",
        "error",
        "prompt_text",
        "response_text",
        "metadata_json",
    )
    readonly_fields = fields

    @admin.display(description="run", ordering="run_id")
    def run_col(self, obj: AICall) -> Any:
        return run_link(obj.run_id)

    @admin.display(description="stage")
    def stage_col(self, obj: AICall) -> str:
        return obj.stage.stage_id if obj.stage_id and obj.stage else "—"

    @admin.display(description="tokens (in / out)")
    def tokens(self, obj: AICall) -> str:
        return f"{obj.input_tokens:,} / {obj.output_tokens:,}"

    @admin.display(description="cost", ordering="cost")
    def cost_col(self, obj: AICall) -> str:
        return fmt_cost(obj.cost) if obj.cost is not None else "unpriced"

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, obj: AICall) -> str:
        return "—" if obj.latency_ms is None else f"{obj.latency_ms:,} ms"

    @admin.display(description="prompt")
    def prompt_text(self, obj: AICall) -> Any:
        return pretty_json(obj.prompt) if obj.prompt else "—"

    @admin.display(description="response")
    def response_text(self, obj: AICall) -> Any:
        return pretty_json(obj.response) if obj.response else "—"

    @admin.display(description="metadata")
    def metadata_json(self, obj: AICall) -> Any:
        return pretty_json(obj.metadata)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra = {"costs_url": reverse(f"admin:{self.opts.app_label}_aicall_costs"), **(extra_context or {})}
        response = super().changelist_view(request, extra_context=extra)
        context = getattr(response, "context_data", None) or {}
        cl = context.get("cl")
        if cl is not None:  # not when the response is a redirect (bad filter parameters, actions)
            context["totals"] = totals(cl.queryset)
        return response

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        label = self.opts.app_label
        return [
            path("costs/", wrap(self.costs_view), name=f"{label}_aicall_costs"),
            path("costs/export.csv", wrap(self.costs_csv_view), name=f"{label}_aicall_costs_csv"),
            *super().get_urls(),
        ]

    def costs_view(self, request: HttpRequest) -> HttpResponse:
        return views.costs_view(self, request)

    def costs_csv_view(self, request: HttpRequest) -> HttpResponse:
        return views.costs_csv_view(self, request)
