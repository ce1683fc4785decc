"""Workflow artifacts: named JSON values kept with a run."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.template.defaultfilters import filesizeformat

from ..models import WorkflowArtifact
from .common import ReadOnlyAdmin, RunFilter, pretty_json, run_link

STAGE_HEAVY = ("stage__output_data", "stage__config", "stage__suspended_state", "stage__metrics")


@admin.register(WorkflowArtifact)
class WorkflowArtifactAdmin(ReadOnlyAdmin):
    list_display = ("key", "type", "run_col", "stage_col", "size_col", "created_at")
    list_filter = ("type", RunFilter, ("created_at", admin.DateFieldListFilter))
    list_select_related = ("stage",)
    search_fields = ("key",)
    ordering = ("-created_at", "-id")
    changelist_defer = ("data", "metadata", *STAGE_HEAVY)
    fields = (
        "key",
        "type",
        "run_col",
        "stage_col",
        "size_col",
        "created_at",
        "updated_at",
        "data_json",
        "metadata_json",
    )
    readonly_fields = fields

    @admin.display(description="run", ordering="run_id")
    def run_col(self, obj: WorkflowArtifact) -> Any:
        return run_link(obj.run_id)

    @admin.display(description="stage")
    def stage_col(self, obj: WorkflowArtifact) -> str:
        return obj.stage.stage_id if obj.stage_id and obj.stage else "—"

    @admin.display(description="size", ordering="size")
    def size_col(self, obj: WorkflowArtifact) -> str:
        return filesizeformat(obj.size)

    @admin.display(description="data")
    def data_json(self, obj: WorkflowArtifact) -> Any:
        return pretty_json(obj.data)

    @admin.display(description="metadata")
    def metadata_json(self, obj: WorkflowArtifact) -> Any:
        return pretty_json(obj.metadata)
