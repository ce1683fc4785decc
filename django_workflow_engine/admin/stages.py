"""Workflow stages: a read-only list across runs and a read-only stage page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import OuterRef, Subquery

from ..models import WorkflowJob, WorkflowStage
from .common import (
    ReadOnlyAdmin,
    RunFilter,
    ValueFilter,
    badge,
    elapsed_ms,
    fmt_duration,
    pretty_json,
    run_link,
)

RUN_HEAVY = ("run__input", "run__output", "run__config", "run__metadata")


class StageWorkflowFilter(admin.SimpleListFilter):
    title = "workflow"
    parameter_name = "workflow"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        from ..registry import registry

        return [(w.id, w.name or w.id) for w in registry.all()]

    def queryset(self, request: Any, queryset: Any) -> Any:
        return queryset.filter(run__workflow_id=self.value()) if self.value() else queryset


class MapFilter(ValueFilter):
    """``?map=<stage id>``: the items of that map stage (the run page's timeline links here)."""

    title = "items of map"
    parameter_name = "map"

    def queryset(self, request: Any, queryset: Any) -> Any:
        value = self.value()
        if value:
            return queryset.filter(item_index__isnull=False, stage_id__startswith=f"{value}[")
        return queryset


class GenerationFilter(admin.SimpleListFilter):
    """Current records by default; a rerun's superseded records (earlier attempts) on request."""

    title = "attempt"
    parameter_name = "generation"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [("superseded", "earlier attempts (replaced by a rerun)"), ("all", "every attempt")]

    def choices(self, changelist: Any) -> Any:
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "current",
        }
        for value, label in self.lookup_choices:
            yield {
                "selected": self.value() == value,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": label,
            }

    def queryset(self, request: Any, queryset: Any) -> Any:
        if self.value() == "all":
            return queryset
        if self.value() == "superseded":
            return queryset.superseded()
        return queryset.current()


@admin.register(WorkflowStage)
class WorkflowStageAdmin(ReadOnlyAdmin):
    list_display = (
        "stage_id",
        "stage_name",
        "run_col",
        "workflow",
        "execution_group",
        "status_badge",
        "tries",
        "duration",
        "started_at",
    )
    list_display_links = ("stage_id",)
    list_filter = (
        "status",
        StageWorkflowFilter,
        ("created_at", admin.DateFieldListFilter),
        RunFilter,
        MapFilter,
        GenerationFilter,
    )
    list_select_related = ("run",)
    search_fields = ("=stage_id", "=run__id")
    search_help_text = "An exact stage id (e.g. summarize) or a full run id."
    # Stage ids are time-ordered (a millisecond timestamp prefix), so newest first is a backward scan of the
    # primary key index; the table has no index on created_at.
    ordering = ("-id",)
    changelist_defer = ("output_data", "config", "suspended_state", "metrics", "item", *RUN_HEAVY)
    fields = (
        "run_col",
        "stage_id",
        "stage_name",
        "execution_group",
        "stage_number",
        "item_index",
        "item_json",
        "status_badge",
        "generation",
        "tries",
        "created_at",
        "started_at",
        "completed_at",
        "duration",
        "error",
        "next_poll_at",
        "poll_interval_ms",
        "max_wait_until",
        "output_json",
        "config_json",
        "suspended_state_json",
        "metrics_json",
    )
    readonly_fields = fields

    def get_queryset(self, request: Any) -> Any:
        # Every generation, so a superseded record's page opens from its logs and AI calls; the changelist
        # shows the current generation unless the attempt filter says otherwise.
        latest_job = WorkflowJob.objects.filter(run=OuterRef("run"), stage_id=OuterRef("stage_id")).order_by(
            "-created_at", "-id"
        )
        return (
            WorkflowStage.all_generations.select_related("run")
            .annotate(
                job_attempt=Subquery(latest_job.values("attempt")[:1]),
                job_max_attempts=Subquery(latest_job.values("max_attempts")[:1]),
            )
            .order_by(*self.get_ordering(request))
        )

    @admin.display(description="tries")
    def tries(self, obj: WorkflowStage) -> str:
        """Deliveries of the stage's job so far, of the most it may get (a superseded record's are not kept)."""
        attempt = getattr(obj, "job_attempt", None)  # annotated by get_queryset
        if obj.superseded_at is not None or attempt is None:
            return "—"
        return f"{attempt} of {getattr(obj, 'job_max_attempts', None)}"

    @admin.display(description="generation")
    def generation(self, obj: WorkflowStage) -> str:
        text = f"{obj.attempt} (0 = the original run)" if obj.attempt == 0 else f"{obj.attempt} (rerun)"
        if obj.superseded_at is not None:
            by = f" by {obj.superseded_by}" if obj.superseded_by else ""
            text += f" (replaced by a rerun{by} at {obj.superseded_at:%Y-%m-%d %H:%M:%S})"
        return text

    @admin.display(description="run", ordering="run_id")
    def run_col(self, obj: WorkflowStage) -> Any:
        return run_link(obj.run_id)

    @admin.display(description="workflow", ordering="run__workflow_id")
    def workflow(self, obj: WorkflowStage) -> str:
        return obj.run.workflow_id

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: WorkflowStage) -> Any:
        return badge(obj.status)

    @admin.display(description="duration", ordering="duration_ms")
    def duration(self, obj: WorkflowStage) -> str:
        return fmt_duration(elapsed_ms(obj.started_at, obj.completed_at, obj.duration_ms))

    @admin.display(description="error")
    def error(self, obj: WorkflowStage) -> Any:
        return pretty_json(obj.error_message) if obj.error_message else "—"

    @admin.display(description="output")
    def output_json(self, obj: WorkflowStage) -> Any:
        return pretty_json(obj.output_data)

    @admin.display(description="item (a map's input)")
    def item_json(self, obj: WorkflowStage) -> Any:
        return pretty_json(obj.item) if obj.item_index is not None else "—"

    @admin.display(description="config")
    def config_json(self, obj: WorkflowStage) -> Any:
        return pretty_json(obj.config)

    @admin.display(description="suspended state")
    def suspended_state_json(self, obj: WorkflowStage) -> Any:
        return pretty_json(obj.suspended_state)

    @admin.display(description="metrics")
    def metrics_json(self, obj: WorkflowStage) -> Any:
        return pretty_json(obj.metrics)
