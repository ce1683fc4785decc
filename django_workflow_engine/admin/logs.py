"""Workflow logs: filter by level, run and stage; search the message."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.utils.text import Truncator

from ..models import WorkflowLog
from .common import ReadOnlyAdmin, RunFilter, StageIdFilter, level_badge, pretty_json, run_link

STAGE_HEAVY = ("stage__output_data", "stage__config", "stage__suspended_state", "stage__metrics")


@admin.register(WorkflowLog)
class WorkflowLogAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "level_badge", "run_col", "stage_col", "short_message")
    list_display_links = ("created_at",)
    list_filter = ("level", RunFilter, StageIdFilter, ("created_at", admin.DateFieldListFilter))
    list_select_related = ("stage",)
    search_fields = ("message",)
    search_help_text = "Words in the log message."
    # Log ids grow with insertion, so newest first is a backward scan of the primary key index (the table is
    # indexed on created_at only together with the run).
    ordering = ("-id",)
    list_per_page = 100
    changelist_defer = ("metadata", *STAGE_HEAVY)
    fields = ("created_at", "level_badge", "run_col", "stage_col", "message", "metadata_json")
    readonly_fields = fields

    @admin.display(description="level", ordering="level")
    def level_badge(self, obj: WorkflowLog) -> Any:
        return level_badge(obj.level)

    @admin.display(description="run", ordering="run_id")
    def run_col(self, obj: WorkflowLog) -> Any:
        return run_link(obj.run_id)

    @admin.display(description="stage")
    def stage_col(self, obj: WorkflowLog) -> str:
        return obj.stage.stage_id if obj.stage_id and obj.stage else "—"

    @admin.display(description="message")
    def short_message(self, obj: WorkflowLog) -> str:
        return Truncator(obj.message).chars(200)

    @admin.display(description="metadata")
    def metadata_json(self, obj: WorkflowLog) -> Any:
        return pretty_json(obj.metadata)
