"""Workflow jobs: what workers claim, lease and retry ("execute stage S of run R"), read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.utils import timezone
from django.utils.text import Truncator

from ..models import Status, WorkflowJob
from .common import ReadOnlyAdmin, RunFilter, badge, pretty_json, run_link


class JobStatusFilter(admin.SimpleListFilter):
    """The states a job takes (jobs are never SKIPPED); no query."""

    title = "status"
    parameter_name = "status"
    STATES = (Status.PENDING, Status.RUNNING, Status.SUSPENDED, Status.COMPLETED, Status.FAILED, Status.CANCELLED)

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [(s.value, s.label) for s in self.STATES]

    def queryset(self, request: Any, queryset: Any) -> Any:
        return queryset.filter(status=self.value()) if self.value() else queryset


@admin.register(WorkflowJob)
class WorkflowJobAdmin(ReadOnlyAdmin):
    list_display = (
        "stage_id",
        "run_col",
        "status_badge",
        "tries",
        "due_at",
        "worker_id",
        "lease",
        "short_error",
    )
    list_display_links = ("stage_id",)
    list_filter = (JobStatusFilter, RunFilter, ("created_at", admin.DateFieldListFilter))
    search_fields = ("=stage_id", "=run__id", "=worker_id")
    search_help_text = "An exact stage id, a full run id or a worker id."
    # Job ids are time-ordered like run ids: newest first is a backward scan of the primary key.
    ordering = ("-id",)
    changelist_defer = ("payload",)
    fields = (
        "run_col",
        "workflow_id",
        "stage_id",
        "status_badge",
        "tries",
        "priority",
        "created_at",
        "available_at",
        "started_at",
        "completed_at",
        "worker_id",
        "locked_at",
        "last_error",
        "payload_json",
    )
    readonly_fields = fields

    @admin.display(description="run", ordering="run_id")
    def run_col(self, obj: WorkflowJob) -> Any:
        return run_link(obj.run_id)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: WorkflowJob) -> Any:
        return badge(obj.status)

    @admin.display(description="due at", ordering="available_at")
    def due_at(self, obj: WorkflowJob) -> str:
        return f"{timezone.localtime(obj.available_at):%Y-%m-%d %H:%M:%S}" if obj.available_at else "—"

    @admin.display(description="lease", ordering="locked_at")
    def lease(self, obj: WorkflowJob) -> str:
        """When the holder last refreshed its lease (only a RUNNING job holds one)."""
        return f"{timezone.localtime(obj.locked_at):%H:%M:%S}" if obj.locked_at else "—"

    @admin.display(description="attempt")
    def tries(self, obj: WorkflowJob) -> str:
        return f"{obj.attempt} of {obj.max_attempts}"

    @admin.display(description="error")
    def short_error(self, obj: WorkflowJob) -> str:
        return Truncator((obj.last_error or "").strip().split("\n")[0]).chars(120) or "—"

    @admin.display(description="payload")
    def payload_json(self, obj: WorkflowJob) -> Any:
        return pretty_json(obj.payload)
