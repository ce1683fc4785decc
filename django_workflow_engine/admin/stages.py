"""Workflow stages: a read-only list across runs and a read-only stage page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from ..models import WorkflowStage
from .common import (
    ReadOnlyAdmin,
    RunFilter,
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


@admin.register(WorkflowStage)
class WorkflowStageAdmin(ReadOnlyAdmin):
    list_display = (
        "stage_id",
        "stage_name",
        "run_col",
        "workflow",
        "execution_group",
        "status_badge",
        "attempt",
        "duration",
        "started_at",
    )
    list_display_links = ("stage_id",)
    list_filter = ("status", StageWorkflowFilter, ("created_at", admin.DateFieldListFilter), RunFilter)
    list_select_related = ("run",)
    search_fields = ("=stage_id", "=run__id")
    search_help_text = "An exact stage id (e.g. summarize) or a full run id."
    # Stage ids are time-ordered (a millisecond timestamp prefix), so newest first is a backward scan of the
    # primary key index; the table has no index on created_at.
    ordering = ("-id",)
    changelist_defer = ("output_data", "config", "suspended_state", "metrics", *RUN_HEAVY)
    fields = (
        "run_col",
        "stage_id",
        "stage_name",
        "execution_group",
        "stage_number",
        "status_badge",
        "attempt",
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
        return super().get_queryset(request).select_related("run")

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

    @admin.display(description="config")
    def config_json(self, obj: WorkflowStage) -> Any:
        return pretty_json(obj.config)

    @admin.display(description="suspended state")
    def suspended_state_json(self, obj: WorkflowStage) -> Any:
        return pretty_json(obj.suspended_state)

    @admin.display(description="metrics")
    def metrics_json(self, obj: WorkflowStage) -> Any:
        return pretty_json(obj.metrics)
