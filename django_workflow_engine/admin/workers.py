"""Workers: the registry's rows (alive / stopped / gone), what each one runs now, and the jobs a gone worker held
and what became of them. Read-only."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.db.models import Q
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from ..hosts.registry import alive_grace_seconds
from ..models import WorkflowWorker
from .common import ReadOnlyAdmin, admin_change_url, badge, run_link

STATE_COLORS = {
    "alive": ("#1e7b34", "#e3f4e7"),
    "stopped": ("#5b6770", "#f3f3f3"),
    "gone": ("#a61b1b", "#fbe4e4"),
}


def state(worker: WorkflowWorker) -> str:
    """``alive``, ``stopped`` (a clean exit) or ``gone`` (no beat for longer than the grace: killed or lost)."""
    if worker.stopped_at is not None:
        return "stopped"
    if worker.heartbeat_at >= timezone.now() - timedelta(seconds=alive_grace_seconds()):
        return "alive"
    return "gone"


class WorkerStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [("alive", "Alive"), ("stopped", "Stopped"), ("gone", "Gone (no beat)")]

    def queryset(self, request: Any, queryset: Any) -> Any:
        cutoff = timezone.now() - timedelta(seconds=alive_grace_seconds())
        if self.value() == "alive":
            return queryset.filter(stopped_at__isnull=True, heartbeat_at__gte=cutoff)
        if self.value() == "stopped":
            return queryset.filter(stopped_at__isnull=False)
        if self.value() == "gone":
            return queryset.filter(Q(stopped_at__isnull=True) & Q(heartbeat_at__lt=cutoff))
        return queryset


@admin.register(WorkflowWorker)
class WorkflowWorkerAdmin(ReadOnlyAdmin):
    list_display = ("id", "state_badge", "transport", "queue_names", "doing", "beat", "stages_done")
    list_display_links = ("id",)
    list_filter = (WorkerStateFilter, "transport")
    search_fields = ("=id", "=host")
    search_help_text = "An exact worker id or host."
    fields = (
        "id",
        "state_badge",
        "host",
        "pid",
        "transport",
        "queue_names",
        "started_at",
        "heartbeat_at",
        "stopped_at",
        "doing",
        "stages_done",
        "jobs_held",
    )
    readonly_fields = fields

    @admin.display(description="state")
    def state_badge(self, obj: WorkflowWorker) -> Any:
        return badge(state(obj), STATE_COLORS)

    @admin.display(description="queues")
    def queue_names(self, obj: WorkflowWorker) -> str:
        return "all (job table)" if obj.transport == "database" else ", ".join(obj.queues or []) or "—"

    @admin.display(description="running now")
    def doing(self, obj: WorkflowWorker) -> Any:
        if not obj.job_id or state(obj) == "stopped":
            return "idle"
        return format_html("{} · {} of {}", obj.workflow_id, obj.stage_id, run_link(obj.run_id))

    @admin.display(description="last beat", ordering="heartbeat_at")
    def beat(self, obj: WorkflowWorker) -> str:
        ago = (timezone.now() - obj.heartbeat_at).total_seconds()
        return f"{timezone.localtime(obj.heartbeat_at):%H:%M:%S} ({ago:.0f} s ago)"

    @admin.display(description="jobs held (newest first)")
    def jobs_held(self, obj: WorkflowWorker) -> Any:
        from ..ops.workers import held_jobs  # the ops package loads only when a page needs it

        jobs = held_jobs(obj.id)
        if not jobs:
            return "none"
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>',
            ((admin_change_url(j), j.stage_id, run_link(j.run_id), badge(j.status), _fate(j)) for j in jobs),
        )
        return format_html(
            '<table class="dwe-held"><tr><th>stage</th><th>run</th><th>status</th><th>what became of it</th></tr>'
            "{}</table>",
            rows,
        )


def _fate(job: Any) -> str:
    if job.status == "RUNNING":
        expires = job.locked_at and job.locked_at + timedelta(seconds=_lease_seconds())
        return f"still leased to it; re-delivered after the lease expires ({expires:%H:%M:%S})" if expires else ""
    if job.status == "PENDING":
        return f"waiting for another delivery (attempt {job.attempt} of {job.max_attempts})"
    return f"{job.status.lower()} (attempt {job.attempt})"


def _lease_seconds() -> float:
    from ..conf import settings

    return float(settings.LEASE_SECONDS)
