"""Why a run waits, for the run list and the run page: a concurrency slot, a suspended stage's next poll,
a retry's backoff. Read from existing rows; the list reads it in its one changelist query."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import DateTimeField, Exists, Min, OuterRef, Q, Subquery
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from ..models import WorkflowJob, WorkflowRun, WorkflowStage
from ..models.status import Status


def _limit(workflow_id: str) -> int | None:
    from ..registry import registry

    workflow = registry.get(workflow_id)
    return getattr(workflow, "max_concurrent_runs", None)


def slot_text(run: Any, running: int | None = None) -> str:
    """``waiting for a concurrency slot: key 'acme', limit 1 (1 running)``."""
    key = f"key {run.concurrency_key!r}" if run.concurrency_key else "the whole workflow"
    limit = _limit(run.workflow_id)
    text = f"waiting for a concurrency slot: {key}, limit {limit if limit is not None else '(no longer set)'}"
    return text + (f" ({running} running)" if running is not None else "")


def slot_wait(run: Any) -> str | None:
    """The run page's line for a run waiting for a slot (one count query), else ``None``."""
    if run.status != Status.PENDING or run.concurrency_key is None:
        return None
    running = WorkflowRun.objects.filter(
        workflow_id=run.workflow_id, concurrency_key=run.concurrency_key, status=Status.RUNNING
    ).count()
    return slot_text(run, running)[0].upper() + slot_text(run, running)[1:] + "; it starts when one frees."


def _next_poll() -> Subquery:
    stages = WorkflowStage.objects.filter(run=OuterRef("pk"), status=Status.SUSPENDED).order_by()
    return Subquery(
        stages.values("run").annotate(at=Min("next_poll_at")).values("at")[:1], output_field=DateTimeField()
    )


def _retry_at() -> Subquery:
    jobs = WorkflowJob.objects.filter(run=OuterRef("pk"), status=Status.PENDING, attempt__gt=0).order_by()
    return Subquery(jobs.values("run").annotate(at=Min("available_at")).values("at")[:1], output_field=DateTimeField())


def annotate(queryset: Any) -> Any:
    """The run list's queryset with ``wait_poll_at`` and ``wait_retry_at`` (correlated, for the page's rows)."""
    return queryset.annotate(wait_poll_at=_next_poll(), wait_retry_at=_retry_at(), wait_signal=_signal_name())


# A line under the status badge, wrapped, so the list keeps its width.
WAIT_STYLE = "display:block;max-width:14em;margin-top:2px;font-size:11px;white-space:normal"


def list_text(run: Any) -> Any:
    """Why a run waits, for the run list's status cell ("" when it does not wait)."""
    if run.status == Status.PENDING and run.concurrency_key is not None:
        return format_html('<span class="dwe-wait" style="{}">{}</span>', WAIT_STYLE, slot_text(run))
    if run.status != Status.RUNNING:
        return ""
    retry = getattr(run, "wait_retry_at", None)
    if retry is not None and retry > timezone.now():
        return format_html(
            '<span class="dwe-wait" style="{}">retry backoff until {}</span>', WAIT_STYLE, timezone.localtime(retry)
        )
    signal = getattr(run, "wait_signal", None)
    if signal:
        return format_html('<span class="dwe-wait" style="{}">waiting for input: {}</span>', WAIT_STYLE, signal)
    poll = getattr(run, "wait_poll_at", None)
    if poll is not None:
        return format_html(
            '<span class="dwe-wait" style="{}">suspended, next poll at {}</span>', WAIT_STYLE, timezone.localtime(poll)
        )
    return ""


def signal_waits() -> Any:
    """SUSPENDED stages of the outer run that wait for a signal."""
    return WorkflowStage.objects.filter(
        run=OuterRef("pk"), status=Status.SUSPENDED, suspended_state__has_key="waiting_for_signal"
    )


def _signal_name() -> Subquery:
    return Subquery(signal_waits().order_by().values("suspended_state__waiting_for_signal")[:1])


class WaitingFilter(admin.SimpleListFilter):
    """Runs that wait: for a concurrency slot, a suspended stage's poll, or a retry's backoff."""

    title = "waiting"
    parameter_name = "waiting"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("input", "for input (a signal)"),
            ("slot", "for a concurrency slot"),
            ("any", "for anything (input, slot, poll, retry)"),
        ]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        slot = Q(status=Status.PENDING, concurrency_key__isnull=False)
        if self.value() == "slot":
            return queryset.filter(slot)
        if self.value() == "input":
            return queryset.filter(Q(status=Status.RUNNING) & Exists(signal_waits()))
        if self.value() == "any":
            suspended = WorkflowStage.objects.filter(run=OuterRef("pk"), status=Status.SUSPENDED)
            retry = WorkflowJob.objects.filter(
                run=OuterRef("pk"), status=Status.PENDING, attempt__gt=0, available_at__gt=timezone.now()
            )
            return queryset.filter(slot | Q(status=Status.RUNNING) & (Exists(suspended) | Exists(retry)))
        return queryset
