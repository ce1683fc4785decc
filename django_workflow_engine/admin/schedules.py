"""Workflow schedules: editable, checked on save (cron, timezone, catch-up, the input against the workflow's
input model), with the next five fire times, a "Run now" action and the schedule's runs."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from ..core.errors import WorkflowEngineError
from ..core.schedule import InvalidSchedule, Timing, check_catchup
from ..models import WorkflowSchedule
from .common import badge, refuse_nul_bytes, run_link

RUNS_SHOWN = 20


class WorkflowScheduleForm(forms.ModelForm):
    """Checks what the engine would refuse at fire time, naming the field, so no row is saved in a bad state."""

    class Meta:
        model = WorkflowSchedule
        fields = (
            "name",
            "workflow_id",
            "enabled",
            "cron",
            "interval_seconds",
            "timezone",
            "input",
            "config",
            "priority",
            "catchup",
            "catchup_limit",
        )

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        if self.errors:
            return data
        from ..registry import registry

        timing = Timing(data.get("cron") or "", data.get("interval_seconds"), data.get("timezone") or "")
        try:
            timing.check()
            check_catchup(data.get("catchup") or "", data.get("catchup_limit") or 0)
        except InvalidSchedule as exc:
            field = exc.field if exc.field in self.fields else None
            raise forms.ValidationError({field: exc.problem} if field else exc.problem) from None
        workflow = registry.get(data.get("workflow_id") or "")
        if workflow is None:
            known = ", ".join(registry.ids()) or "(none registered)"
            self.add_error("workflow_id", f"No workflow {data.get('workflow_id')!r} is registered (known: {known}).")
            return data
        try:
            data["input"] = workflow.parse_input(data.get("input") if data.get("input") is not None else {})
        except WorkflowEngineError as exc:
            self.add_error("input", str(exc))
        try:
            workflow.resolve_config(data.get("config") or None)
        except WorkflowEngineError as exc:
            self.add_error("config", str(exc))
        return data


@admin.action(description="Run now (one run each, outside the timing)", permissions=["change"])
def run_now(modeladmin: WorkflowScheduleAdmin, request: HttpRequest, queryset: Any) -> None:
    from ..facade import engine

    for schedule in queryset.order_by("name"):
        try:
            run = engine.run_schedule_now(schedule.name)
        except WorkflowEngineError as exc:
            modeladmin.message_user(request, f"{schedule.name}: not started: {exc}", messages.ERROR)
            continue
        modeladmin.message_user(
            request, format_html("{}: started run {}", schedule.name, run_link(run.id)), messages.SUCCESS
        )


@admin.register(WorkflowSchedule)
class WorkflowScheduleAdmin(admin.ModelAdmin):
    form = WorkflowScheduleForm
    list_display = ("name", "workflow_id", "timing", "enabled", "catchup", "next_fire", "last_fire", "last_run_col")
    list_filter = ("enabled", "workflow_id")
    search_fields = ("name", "workflow_id")
    actions = [run_now]
    list_select_related = ("last_run",)
    readonly_fields = ("next_fire", "preview", "last_fire", "last_run_col", "source", "runs_list")
    fieldsets = (
        (None, {"fields": ("name", "workflow_id", "enabled", "source")}),
        ("When", {"fields": ("cron", "interval_seconds", "timezone", "preview", "catchup", "catchup_limit")}),
        ("What", {"fields": ("input", "config", "priority")}),
        ("Fired", {"fields": ("next_fire", "last_fire", "last_run_col", "runs_list")}),
    )

    def change_view(self, request: Any, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        refuse_nul_bytes(request, object_id)
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: WorkflowSchedule, form: Any, change: bool) -> None:
        timing_fields = {"cron", "interval_seconds", "timezone", "enabled"}
        if not change or timing_fields & set(form.changed_data):
            # From now: a changed timing (or a schedule enabled again) does not catch up on the old one.
            obj.next_fire_at = obj.timing.next_after(timezone.now()) if obj.enabled else None
        super().save_model(request, obj, form, change)

    @admin.display(description="timing")
    def timing(self, obj: WorkflowSchedule) -> str:
        return obj.every

    @admin.display(description="next fire", ordering="next_fire_at")
    def next_fire(self, obj: WorkflowSchedule) -> str:
        if not obj.enabled:
            return "— (disabled)"
        return _when(obj.next_fire_at) if obj.next_fire_at else "set by the next maintenance tick"

    @admin.display(description="last fire", ordering="last_fire_at")
    def last_fire(self, obj: WorkflowSchedule) -> str:
        return _when(obj.last_fire_at) if obj.last_fire_at else "—"

    @admin.display(description="last run")
    def last_run_col(self, obj: WorkflowSchedule) -> Any:
        return run_link(obj.last_run_id) if obj.last_run_id else "—"

    @admin.display(description="next five fire times")
    def preview(self, obj: WorkflowSchedule) -> Any:
        if obj.pk is None:
            return "shown after saving"
        try:
            obj.timing.check()
        except InvalidSchedule as exc:
            return f"— ({exc})"
        times = obj.preview(timezone.now(), 5)
        return format_html(
            '<ol class="dwe-preview" style="margin:0;padding-left:1.5em">{}</ol>',
            format_html_join("", "<li>{}</li>", ((_when(t, obj.timezone if obj.cron else None),) for t in times)),
        )

    @admin.display(description="defined in")
    def source(self, obj: WorkflowSchedule) -> str:
        if obj.declared is None:
            return "the admin"
        from ..core.schedule import DECLARED_FIELDS

        changed = [f for f in DECLARED_FIELDS if getattr(obj, f) != obj.declared.get(f)]
        if changed:
            return f"code, changed here ({', '.join(changed)}): the code's definition is no longer applied"
        return "code (a change saved here takes precedence over it)"

    @admin.display(description="runs")
    def runs_list(self, obj: WorkflowSchedule) -> Any:
        if obj.pk is None:
            return "—"
        runs = list(obj.runs().only("id", "status", "created_at", "metadata")[:RUNS_SHOWN])
        if not runs:
            return "no runs yet"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    run_link(r.id),
                    badge(r.status),
                    (r.metadata or {}).get("fire_time") or f"run now ({(r.metadata or {}).get('manual', '')})",
                    _when(r.created_at),
                )
                for r in runs
            ),
        )
        return format_html(
            '<table class="dwe-schedule-runs"><thead><tr><th>run</th><th>status</th><th>fire time</th>'
            "<th>created</th></tr></thead><tbody>{}</tbody></table>{}",
            rows,
            f"The latest {RUNS_SHOWN}." if len(runs) == RUNS_SHOWN else "",
        )


def _when(value: Any, zone: str | None = None) -> str:
    if zone:
        from zoneinfo import ZoneInfo

        local = value.astimezone(ZoneInfo(zone))
        return f"{local:%Y-%m-%d %H:%M:%S %Z} ({timezone.localtime(value):%H:%M %Z} here)"
    return f"{timezone.localtime(value):%Y-%m-%d %H:%M:%S %Z}"
