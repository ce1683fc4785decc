"""Cancel and rerun: admin actions on selected runs, and the same operations from a run's page.

Both follow ``delete_selected``: the first request shows a confirmation page (or, for a rerun, a form listing
the workflow's stages); only a POST carrying ``post=yes`` acts. Each needs its own permission
(``cancel_workflowrun`` / ``rerun_workflowrun``), goes through the engine facade, and is written to the admin
log (``LogEntry``) for every run it changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from ..models import WorkflowRun, WorkflowStage
from ..models.status import TERMINAL
from .common import RERUNNABLE, badge, missing_object_redirect, plural, refuse_nul_bytes


class RunAdmin(Protocol):
    """What these actions use of the run admin (:class:`.runs.WorkflowRunAdmin`, which imports them)."""

    admin_site: Any
    opts: Any

    def has_cancel_permission(self, request: HttpRequest, obj: Any = None) -> bool: ...
    def has_rerun_permission(self, request: HttpRequest, obj: Any = None) -> bool: ...
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool: ...
    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any: ...
    def message_user(self, request: HttpRequest, message: Any, level: int = ..., *args: Any, **kwargs: Any) -> None: ...


__all__ = ["TERMINAL", "cancel_run_view", "cancel_selected_runs", "rerun_run_view", "rerun_selected_runs"]

CANCEL_TEMPLATE = "admin/django_workflow_engine/workflowrun/cancel_confirmation.html"
RERUN_TEMPLATE = "admin/django_workflow_engine/workflowrun/rerun_form.html"
REASON_MAX = 500


# -- cancel ------------------------------------------------------------------------------------------------


@admin.action(description="Cancel selected runs…", permissions=["cancel"])
def cancel_selected_runs(modeladmin: RunAdmin, request: HttpRequest, queryset: Any) -> HttpResponse | None:
    if not modeladmin.has_cancel_permission(request):  # Django filters the action out too; refuse regardless
        raise PermissionDenied
    runs = list(queryset.order_by("-created_at"))
    if request.POST.get("post") == "yes":
        _cancel(modeladmin, request, runs)
        return None
    return _cancel_page(modeladmin, request, runs, bulk=True)


def cancel_run_view(modeladmin: RunAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    refuse_nul_bytes(request, object_id)
    if not (modeladmin.has_view_permission(request) and modeladmin.has_cancel_permission(request)):
        raise PermissionDenied  # before the lookup: a refused user learns nothing about which run ids exist
    run = WorkflowRun.objects.filter(pk=object_id).first()
    if run is None:
        return missing_object_redirect(modeladmin, request, object_id)
    if not (modeladmin.has_view_permission(request, run) and modeladmin.has_cancel_permission(request, run)):
        raise PermissionDenied
    if request.method == "POST" and request.POST.get("post") == "yes":
        _cancel(modeladmin, request, [run])
        return HttpResponseRedirect(_run_url(run))
    return _cancel_page(modeladmin, request, [run], bulk=False)


def _cancel_page(modeladmin: RunAdmin, request: HttpRequest, runs: list[WorkflowRun], *, bulk: bool) -> Any:
    to_cancel = [r for r in runs if r.status not in TERMINAL]
    finished = [r for r in runs if r.status in TERMINAL]
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "Cancel runs" if bulk else f"Cancel run {runs[0].short_id}",
        "subtitle": None,
        "opts": modeladmin.opts,
        "bulk": bulk,
        "runs": runs,
        "to_cancel": [(r, badge(r.status)) for r in to_cancel],
        "finished": [(r, badge(r.status)) for r in finished],
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "action_name": "cancel_selected_runs",
        "reason_max": REASON_MAX,
        "run_url": None if bulk else _run_url(runs[0]),
        "original": None if bulk else runs[0],
    }
    request.current_app = modeladmin.admin_site.name
    return TemplateResponse(request, CANCEL_TEMPLATE, context)


def _cancel(modeladmin: RunAdmin, request: HttpRequest, runs: Sequence[WorkflowRun]) -> None:
    from .. import engine
    from ..errors import RunNotFound

    reason = (request.POST.get("reason") or "").replace("\x00", "").strip()[:REASON_MAX] or None
    cancelled = skipped = 0
    for run in runs:
        try:
            done = run.status not in TERMINAL and engine.cancel(run.pk, reason=reason)
        except RunNotFound:
            done = False  # deleted since the queryset was read
        if not done:
            skipped += 1  # already finished (possibly between the confirmation page and this POST)
            continue
        cancelled += 1
        modeladmin.log_change(request, run, f"Cancelled the run{f' (reason: {reason})' if reason else ''}.")
    text = f"Cancelled {plural(cancelled, 'run')}"
    if skipped:
        text += f"; skipped {plural(skipped, 'run')} that had already finished"
    modeladmin.message_user(request, text + ".", messages.SUCCESS if cancelled else messages.WARNING)


# -- rerun -------------------------------------------------------------------------------------------------


@admin.action(description="Rerun from stage…", permissions=["rerun"])
def rerun_selected_runs(modeladmin: RunAdmin, request: HttpRequest, queryset: Any) -> HttpResponse | None:
    if not modeladmin.has_rerun_permission(request):
        raise PermissionDenied
    runs = list(queryset.order_by("-created_at"))
    workflow_ids = sorted({r.workflow_id for r in runs})
    if len(workflow_ids) != 1:
        modeladmin.message_user(
            request,
            f"Select runs of one workflow to rerun them from a stage (the selection has runs of "
            f"{len(workflow_ids)} workflows: {', '.join(workflow_ids)}).",
            messages.ERROR,
        )
        return None
    return _rerun(modeladmin, request, runs, bulk=True)


def rerun_run_view(modeladmin: RunAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    refuse_nul_bytes(request, object_id)
    if not (modeladmin.has_view_permission(request) and modeladmin.has_rerun_permission(request)):
        raise PermissionDenied  # before the lookup: a refused user learns nothing about which run ids exist
    run = WorkflowRun.objects.filter(pk=object_id).first()
    if run is None:
        return missing_object_redirect(modeladmin, request, object_id)
    if not (modeladmin.has_view_permission(request, run) and modeladmin.has_rerun_permission(request, run)):
        raise PermissionDenied
    response = _rerun(modeladmin, request, [run], bulk=False)
    return response or HttpResponseRedirect(_run_url(run))


def _rerun(modeladmin: RunAdmin, request: HttpRequest, runs: list[WorkflowRun], *, bulk: bool) -> HttpResponse | None:
    from ..registry import registry

    workflow_id = runs[0].workflow_id
    workflow = registry.get(workflow_id)
    if workflow is None:
        modeladmin.message_user(
            request,
            f"Workflow {workflow_id!r} is not registered in this project, so its stages are unknown. "
            "Add it to a workflows.py module or WORKFLOW_ENGINE['WORKFLOWS'].",
            messages.ERROR,
        )
        return None
    eligible = [r for r in runs if r.status in RERUNNABLE]
    ineligible = [r for r in runs if r.status not in RERUNNABLE]
    if not eligible:
        modeladmin.message_user(
            request,
            f"Nothing to rerun: only completed or failed runs can be rerun ({plural(len(runs), 'run')} selected, "
            f"none of them completed or failed).",
            messages.WARNING,
        )
        return None
    error = None
    if request.method == "POST" and request.POST.get("post") == "yes":
        stage_id = request.POST.get("stage") or ""
        if workflow.has_stage(stage_id):
            _do_rerun(modeladmin, request, eligible, stage_id, skipped=len(ineligible))
            return None
        error = "Choose the stage to rerun from."

    stage_status: dict[str, Any] = {}
    if not bulk:
        stage_status = {s.stage_id: badge(s.status) for s in WorkflowStage.objects.filter(run=runs[0])}
    plan = workflow.execution_plan()
    groups = [
        {
            "number": number,
            "parallel": len(group) > 1,
            "stages": [
                {
                    "id": s.id,
                    "name": s.name,
                    "status": stage_status.get(s.id),
                    # what confirming runs again (this group and every later one) and what it keeps
                    "reruns": ", ".join(x.id for later in plan[number - 1 :] for x in later),
                    "keeps": ", ".join(x.id for earlier in plan[: number - 1] for x in earlier),
                }
                for s in group
            ],
        }
        for number, group in enumerate(plan, start=1)
    ]
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": f"Rerun {plural(len(eligible), 'run')} of {workflow.name or workflow.id} from a stage"
        if bulk
        else f"Rerun run {runs[0].short_id} from a stage",
        "subtitle": None,
        "opts": modeladmin.opts,
        "bulk": bulk,
        "workflow": workflow,
        "groups": groups,
        "runs": runs,
        "eligible": [(r, badge(r.status)) for r in eligible],
        "ineligible": [(r, badge(r.status)) for r in ineligible],
        "error": error,
        "selected_stage": request.POST.get("stage", ""),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "action_name": "rerun_selected_runs",
        "run_url": None if bulk else _run_url(runs[0]),
        "original": None if bulk else runs[0],
    }
    request.current_app = modeladmin.admin_site.name
    return TemplateResponse(request, RERUN_TEMPLATE, context)


def _do_rerun(
    modeladmin: RunAdmin, request: HttpRequest, runs: Sequence[WorkflowRun], stage_id: str, *, skipped: int
) -> None:
    from .. import engine
    from ..errors import InvalidRunState, WorkflowEngineError

    done = 0
    failures: list[str] = []
    for run in runs:
        try:
            engine.rerun_from(run.pk, stage_id, actor=request.user.get_username()[:200] or None)
        except InvalidRunState:
            skipped += 1  # its state changed since the form was shown
            continue
        except WorkflowEngineError as exc:
            failures.append(f"{run.short_id}: {exc}")
            continue
        done += 1
        modeladmin.log_change(request, run, f"Rerun from stage {stage_id!r}.")
    text = f"Rerunning {plural(done, 'run')} from stage {stage_id!r}"
    if skipped:
        text += f"; skipped {plural(skipped, 'run')} that were not completed or failed"
    modeladmin.message_user(request, text + ".", messages.SUCCESS if done else messages.WARNING)
    for failure in failures:
        modeladmin.message_user(request, f"Could not rerun {failure}", messages.ERROR)


def _run_url(run: WorkflowRun) -> str:
    opts = run._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[run.pk])
