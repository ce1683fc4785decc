"""Workflow runs: the changelist, the read-only run page, and the URLs of the cancel and rerun buttons."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Case, CharField, Count, IntegerField, OuterRef, Q, Subquery, Sum, Value, When
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from ..core.ids import short_id
from ..models import (
    AICall,
    OutboxEvent,
    Status,
    WorkflowArtifact,
    WorkflowJob,
    WorkflowLog,
    WorkflowRun,
    WorkflowStage,
)
from ..tasks.workflow import TASK_WORKFLOW_ID
from . import actions, family, history, signals, waiting
from .common import (
    ACTIVE,
    RERUNNABLE,
    ReadOnlyAdmin,
    WorkflowFilter,
    badge,
    elapsed_ms,
    fmt_cost,
    fmt_duration,
    fmt_int,
    level_badge,
    missing_object_redirect,
    pretty_json,
    refuse_nul_bytes,
)
from .maps import map_counts
from .timeline import build_rows, render_timeline

HEX = re.compile(r"^[0-9a-f]{4,32}$")


class RunStatusFilter(admin.SimpleListFilter):
    """The states a run takes (a run is never SUSPENDED or SKIPPED: its stages are); no query."""

    title = "status"
    parameter_name = "status__exact"
    STATES = (Status.PENDING, Status.RUNNING, Status.COMPLETED, Status.FAILED, Status.CANCELLED)

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(s.value, s.label) for s in self.STATES]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        return queryset.filter(status=self.value()) if self.value() else queryset


LOGS_PER_PAGE = 50
EVENTS_SHOWN = 100
ARTIFACTS_SHOWN = 100


def workflow_plan(workflow_id: str) -> tuple[tuple[Any, ...], ...] | None:
    from ..registry import registry

    workflow = registry.get(workflow_id)
    return workflow.execution_plan() if workflow is not None else None


def stage_total(workflow_id: str) -> int | None:
    from ..registry import registry

    workflow = registry.get(workflow_id)
    return len(workflow.stage_ids()) if workflow is not None else None


@admin.register(WorkflowRun)
class WorkflowRunAdmin(ReadOnlyAdmin):
    list_display = (
        "short_run_id",
        "workflow",
        "status_badge",
        "progress",
        "error",
        "cost",
        "tokens",
        "duration",
        "created_at",
    )
    list_display_links = ("short_run_id",)
    list_filter = (RunStatusFilter, waiting.WaitingFilter, WorkflowFilter, ("created_at", admin.DateFieldListFilter))
    search_fields = ("id", "workflow_id")
    search_help_text = (
        "A run id (full or the short id shown in the list), a workflow id, a task's module path, or a business key "
        "(the input field a workflow declares as its label, e.g. a ticket id)."
    )
    ordering = ("-created_at",)
    changelist_defer = ("input", "output", "config", "metadata")
    actions = [actions.cancel_selected_runs, actions.rerun_selected_runs]
    run_template = "admin/django_workflow_engine/workflowrun/run_detail.html"

    # -- permissions (checked by the actions and by the run page's buttons) --------------------------------

    def has_cancel_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.cancel_workflowrun")

    def has_rerun_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.rerun_workflowrun")

    def has_signal_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.signal_workflowrun")

    # -- changelist ----------------------------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> Any:
        # Completed stages per run, as a correlated subquery: evaluated only for the rows of the page shown,
        # through the (run, stage_id) unique index, and still one query for the whole page.
        completed = (
            WorkflowStage.objects.filter(run=OuterRef("pk"), status=Status.COMPLETED)
            .order_by()
            .values("run")
            .annotate(n=Count("pk"))
            .values("n")
        )
        from ..registry import registry

        # The business key of runs whose workflow declares a label (one key of the deferred input).
        labels = [When(workflow_id=w.id, then=KT(f"input__{w.label}")) for w in registry.all() if w.label]
        none = Value(None, output_field=CharField())
        label_text = Case(*labels, default=none, output_field=CharField()) if labels else none
        return waiting.annotate(
            super()
            .get_queryset(request)
            .annotate(
                completed_stages=Coalesce(Subquery(completed, output_field=IntegerField()), 0),
                # one key of the (deferred) output: a failed run's error message, for the error column
                error_text=KT("output__error__message"),
                label_text=label_text,
            )
        )

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> tuple[Any, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        condition = Q(workflow_id=term) | Q(workflow_id__istartswith=term)
        # Runs of Django tasks: by the task's module path (or a prefix of it, e.g. "myapp.tasks").
        condition |= Q(workflow_id=TASK_WORKFLOW_ID, workflow_name__startswith=term)
        from ..registry import registry

        for workflow in registry.all():
            if workflow.label:
                # A business key: that workflow's runs whose input label field equals the term (as text, or
                # as a number when it is one). It scans that workflow's runs by the (workflow_id, ...) index.
                key = Q(**{f"input__{workflow.label}": term})
                if re.fullmatch(r"-?\d{1,18}", term):
                    key |= Q(**{f"input__{workflow.label}": int(term)})
                condition |= Q(workflow_id=workflow.id) & key
        if HEX.match(term.lower()):
            term = term.lower()
            # Full ids hit the primary key; the 8-character short id is a suffix.
            condition |= Q(pk=term) if len(term) == 32 else Q(id__endswith=term)
        return queryset.filter(condition), False

    @admin.display(description="run")
    def short_run_id(self, obj: WorkflowRun) -> Any:
        return format_html('<code title="{}">{}</code>', obj.pk, short_id(obj.pk))

    @admin.display(description="workflow", ordering="workflow_id")
    def workflow(self, obj: WorkflowRun) -> Any:
        if obj.workflow_id == TASK_WORKFLOW_ID:
            name = format_html("task {}", obj.workflow_name)
        elif obj.workflow_name and obj.workflow_name != obj.workflow_id:
            name = format_html('{} <code class="quiet">{}</code>', obj.workflow_name, obj.workflow_id)
        else:
            name = format_html("<code>{}</code>", obj.workflow_id)
        label = getattr(obj, "label_text", None)
        if label:
            return format_html('{} <span class="dwe-label">· {}</span>', name, history.first_line(str(label), 60))
        return name

    @admin.display(description="error")
    def error(self, obj: WorkflowRun) -> Any:
        message = getattr(obj, "error_text", None)
        if not message or obj.status != Status.FAILED:
            return ""
        url = reverse(f"admin:{obj._meta.app_label}_workflowrun_change", args=[obj.pk]) + "#dwe-failure"
        return format_html('<a href="{}" class="dwe-error-link">{}</a>', url, history.first_line(message, 120))

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: WorkflowRun) -> Any:
        # Why a run waits goes under its badge (a column of its own made the list wider than a laptop screen).
        wait = waiting.list_text(obj)
        return format_html("{}{}", badge(obj.status), wait) if wait else badge(obj.status)

    @admin.display(description="progress")
    def progress(self, obj: WorkflowRun) -> Any:
        total = stage_total(obj.workflow_id)
        done = getattr(obj, "completed_stages", None)
        if done is None:
            done = obj.stages.filter(status=Status.COMPLETED).count()
        return format_html(
            '<span style="white-space:nowrap">{}/{} stages</span>', done, total if total is not None else "?"
        )

    @admin.display(description="cost", ordering="total_cost")
    def cost(self, obj: WorkflowRun) -> str:
        return fmt_cost(obj.total_cost)

    @admin.display(description="tokens", ordering="total_tokens")
    def tokens(self, obj: WorkflowRun) -> str:
        return fmt_int(obj.total_tokens)

    @admin.display(description="duration", ordering="duration_ms")
    def duration(self, obj: WorkflowRun) -> str:
        return fmt_duration(elapsed_ms(obj.started_at, obj.completed_at, obj.duration_ms))

    # -- URLs ----------------------------------------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        info = self.opts.app_label, self.opts.model_name
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/cancel/",
                wrap(self.cancel_view),
                name="{}_{}_cancel".format(*info),
            ),
            path(
                "<path:object_id>/rerun/",
                wrap(self.rerun_view),
                name="{}_{}_rerun".format(*info),
            ),
            path(
                "<path:object_id>/signal/",
                wrap(self.signal_view),
                name="{}_{}_signal".format(*info),
            ),
            *super().get_urls(),
        ]

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return actions.cancel_run_view(self, request, object_id)

    def rerun_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return actions.rerun_run_view(self, request, object_id)

    def signal_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return signals.signal_run_view(self, request, object_id)

    # -- the run page --------------------------------------------------------------------------------------

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        refuse_nul_bytes(request, object_id)
        # Permission before the lookup (as Django's own views): otherwise 403 vs redirect tells a user without
        # permission which run ids exist.
        if not self.has_view_permission(request):
            raise PermissionDenied
        run = WorkflowRun.objects.filter(pk=object_id).first()
        if run is None:
            return missing_object_redirect(self, request, object_id)
        if not self.has_view_permission(request, run):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            **run_page_context(request, run),
            "opts": self.opts,
            "title": f"{run.workflow_name or run.workflow_id} run {run.short_id}",
            "subtitle": None,
            "can_cancel": self.has_cancel_permission(request, run) and run.status not in actions.TERMINAL,
            "can_rerun": self.has_rerun_permission(request, run) and run.status in RERUNNABLE,
            **signals.page_context(request, self, run),
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.run_template, context)


def run_page_context(request: HttpRequest, run: WorkflowRun) -> dict[str, Any]:
    """Everything the run page shows, in a fixed number of queries however large the run's history is."""
    # A map's items (as many as MAX_MAP_ITEMS) are counted, not listed: admin/maps.py.
    current = list(WorkflowStage.objects.filter(run=run, item_index=None).order_by("execution_group", "stage_number"))
    earlier = list(
        WorkflowStage.all_generations.filter(run=run, superseded_at__isnull=False)
        .defer("output_data", "config", "suspended_state")
        .order_by("superseded_at", "execution_group", "stage_number")
    )
    jobs = history.latest_jobs(
        list(WorkflowJob.objects.filter(run=run).exclude(stage_id__contains="[").defer("payload"))
    )
    attempts = history.attempts(run, current, earlier)
    attempt = attempts[-1]
    shown = request.GET.get("attempt") or ""
    if shown.isdigit() and 1 <= int(shown) < len(attempts):
        attempt = attempts[int(shown) - 1]
    stages = current if attempt.is_current else attempt.records
    suspended_at: dict[str, datetime] = {
        str(e["payload"].get("stage_id")): e["occurred_at"]
        for e in OutboxEvent.objects.filter(run_id=run.pk, event_type="stage:suspended")
        .order_by("sequence")
        .values("payload", "occurred_at")
        if isinstance(e["payload"], dict)
    }
    plan = workflow_plan(run.workflow_id)
    now = timezone.now()
    traces = history.last_tracebacks({s.pk for s in [*stages, *current] if s.error_message})
    stage_rows = []
    for s in stages:
        job = jobs.get(s.stage_id) if attempt.is_current else None
        retry = history.retry_scheduled(s, job)
        stage_rows.append(
            {
                "obj": s,
                "status": badge("RETRYING") if retry else badge(s.status),
                "retry": retry,
                "tries": history.tries(job) if attempt.is_current else "—",
                "job": job,
                "live": _live_progress(s),
                "duration": fmt_duration(elapsed_ms(s.started_at, s.completed_at, s.duration_ms)),
                "traceback": traces.get(s.pk),
                # an earlier attempt's records are read without their output (history shows errors and timings)
                "output": pretty_json(s.output_data)
                if "output_data" not in s.get_deferred_fields() and s.output_data is not None
                else None,
            }
        )
    generation_of = {s.pk: n.number for n in attempts for s in n.replaced}

    # Logs: level filter and pagination ride on the run page's own query string.
    level = request.GET.get("level") or ""
    if level not in WorkflowLog.Level.values:
        level = ""
    logs_qs = WorkflowLog.objects.filter(run=run).select_related("stage").order_by("created_at", "id")
    if level:
        logs_qs = logs_qs.filter(level=level)
    log_page = Paginator(logs_qs, LOGS_PER_PAGE).get_page(request.GET.get("logs_page"))
    logs = []
    for log in log_page.object_list:
        meta = dict(log.metadata or {})
        trace = meta.pop("traceback", None)
        logs.append(
            {
                "obj": log,
                "level": level_badge(log.level),
                "stage": log.stage.stage_id if log.stage else "",
                # a line of a stage record a rerun replaced belongs to that earlier attempt
                "attempt": generation_of.get(log.stage_id) if log.stage_id else None,
                "metadata": meta or None,
                "traceback": trace,
            }
        )

    ai_by_model = list(
        AICall.objects.filter(run=run)
        .order_by()
        .values("model_id")
        .annotate(
            calls=Count("pk"),
            in_tokens=Sum("input_tokens"),
            out_tokens=Sum("output_tokens"),
            total_cost=Sum("cost"),
            unpriced=Count("pk", filter=Q(cost__isnull=True)),
        )
        .order_by("model_id")
    )
    for row in ai_by_model:
        row["cost_display"] = fmt_cost(row["total_cost"]) + (
            f" (+{row['unpriced']} unpriced)" if row["unpriced"] else ""
        )

    events = list(OutboxEvent.objects.filter(run_id=run.pk).order_by("-sequence")[:EVENTS_SHOWN])
    events.reverse()
    artifacts = list(
        WorkflowArtifact.objects.filter(run=run)
        .select_related("stage")
        .only("key", "type", "size", "created_at", "stage__stage_id")
        .order_by("key")[:ARTIFACTS_SHOWN]
    )
    # Stage artifacts live in blob storage; the stage's output record names them.
    blob_artifacts = [
        {"name": name, "key": key, "stage": s.stage_id}
        for s in current
        for name, key in sorted(((s.output_data or {}).get("artifact_keys") or {}).items())
    ]
    total = sum(len(g) for g in plan) if plan is not None else None
    done = sum(1 for s in current if s.status == Status.COMPLETED)
    # Every 5 s while something can change soon; every 30 s while the run only waits for a suspended stage.
    refresh = None
    if run.status in ACTIVE:
        refresh = 30 if history.only_waiting(run, current) else 5
    share_cost, share_tokens = history.current_share(attempts[-1])
    failure = failure_summary(run, current, jobs, traces)
    app = WorkflowRun._meta.app_label
    return {
        "run": run,
        "original": run,
        "status": badge(run.status),
        "duration": fmt_duration(elapsed_ms(run.started_at, run.completed_at, run.duration_ms)),
        "attempt_duration": fmt_duration(history.attempt_duration_ms(run, attempts[-1])),
        "attempts": attempts,
        "attempt": attempt,
        "failure": failure,
        "waits": history.waits(run, current, jobs),
        "share_cost": fmt_cost(share_cost),
        "share_tokens": fmt_int(share_tokens),
        "cost": fmt_cost(run.total_cost),
        **family.relatives(run),
        "max_cost": fmt_cost(run.max_cost) if run.max_cost is not None else "no limit",
        "tokens": fmt_int(run.total_tokens),
        "progress": f"{done}/{total if total is not None else '?'} stages",
        "input_json": pretty_json(run.input),
        "config_json": pretty_json(run.config),
        "output_json": pretty_json(run.output),
        "metadata_json": pretty_json(run.metadata) if run.metadata else None,
        "timeline": render_timeline(run, build_rows(stages, plan, suspended_at, map_counts(run, current)), now)
        if attempt.is_current
        else None,
        "stage_rows": stage_rows,
        "logs": logs,
        "log_page": log_page,
        "log_level": level,
        "log_levels": WorkflowLog.Level.values,
        "ai_by_model": ai_by_model,
        "events": [(e, pretty_json(e.payload)) for e in events],
        "events_total": run.event_seq,
        "events_shown": EVENTS_SHOWN,
        "artifacts": artifacts,
        "blob_artifacts": blob_artifacts,
        "refresh_seconds": refresh,
        "urls": {
            "logs": reverse(f"admin:{app}_workflowlog_changelist") + f"?run={run.pk}",
            "ai_calls": reverse(f"admin:{app}_aicall_changelist") + f"?run={run.pk}",
            "stages": reverse(f"admin:{app}_workflowstage_changelist") + f"?run={run.pk}",
            "artifacts": reverse(f"admin:{app}_workflowartifact_changelist") + f"?run={run.pk}",
            "jobs": reverse(f"admin:{app}_workflowjob_changelist") + f"?run={run.pk}",
            "cancel": reverse(f"admin:{app}_workflowrun_cancel", args=[run.pk]),
            "rerun": reverse(f"admin:{app}_workflowrun_rerun", args=[run.pk]),
            "history": reverse(f"admin:{app}_workflowrun_history", args=[run.pk]),
        },
    }


def failure_summary(
    run: WorkflowRun, stages: list[WorkflowStage], jobs: dict[str, WorkflowJob], traces: dict[str, str]
) -> dict[str, Any] | None:
    """Which stage failed, on which try, why (type and message) and its stored traceback, for a FAILED run."""
    if run.status != Status.FAILED:
        return None
    error = (run.output or {}).get("error") if isinstance(run.output, dict) else None
    error = error if isinstance(error, dict) else {}
    stage = next((s for s in stages if s.stage_id == error.get("stage_id")), None)
    if stage is None:
        stage = next((s for s in stages if s.status == Status.FAILED), None)
    message = (stage.error_message if stage is not None else None) or error.get("message") or "no error message"
    kind, text = history.split_error(message)
    trace = traces.get(stage.pk) if stage is not None else None
    job = jobs.get(stage.stage_id) if stage is not None else None
    return {
        "stage": stage,
        "tries": history.tries(job) if job is not None else None,
        "type": kind,
        "message": text,
        "code": error.get("code"),
        "traceback": trace,
    }


def _live_progress(stage: Any) -> str | None:
    """A running stage's latest ``ctx.progress(...)``, as its worker's last beat wrote it."""
    if stage.status != "RUNNING" or "metrics" in stage.get_deferred_fields():
        return None
    live = (stage.metrics or {}).get("live_progress") if isinstance(stage.metrics, dict) else None
    if not isinstance(live, dict):
        return None
    message = f" · {live['message']}" if live.get("message") else ""
    return f"{float(live.get('progress') or 0):.0f}%{message}"
