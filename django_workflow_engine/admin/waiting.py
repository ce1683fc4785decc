"""Why a run waits, for the run list and the run page: a delayed start's time, a concurrency slot, an AI rate
limit (a deferred stage), a signal, a suspended stage's next poll, a retry's backoff, and its deadline. Read from
existing rows; the list reads it in its one changelist query."""

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
    if run.status != Status.PENDING or run.concurrency_key is None or is_scheduled(run):
        return None  # a delayed start not due yet waits for its time (scheduled_wait), not for a slot
    running = WorkflowRun.objects.filter(
        workflow_id=run.workflow_id, concurrency_key=run.concurrency_key, status=Status.RUNNING
    ).count()
    return slot_text(run, running)[0].upper() + slot_text(run, running)[1:] + "; it starts when one frees."


def is_scheduled(run: Any) -> bool:
    """A delayed start whose first group is not due yet."""
    at = getattr(run, "scheduled_at", None)
    return at is not None and run.status in (Status.RUNNING, Status.PENDING) and at > timezone.now()


def scheduled_wait(run: Any) -> str | None:
    """The run page's line for a delayed start not due yet, else ``None``."""
    if not is_scheduled(run):
        return None
    return f"Scheduled: a delayed start, its first stage is due at {timezone.localtime(run.scheduled_at):%Y-%m-%d %H:%M:%S}."


def _next_poll() -> Subquery:
    stages = WorkflowStage.objects.filter(run=OuterRef("pk"), status=Status.SUSPENDED).order_by()
    return Subquery(
        stages.values("run").annotate(at=Min("next_poll_at")).values("at")[:1], output_field=DateTimeField()
    )


def _retry_at() -> Subquery:
    jobs = WorkflowJob.objects.filter(run=OuterRef("pk"), status=Status.PENDING, attempt__gt=0).order_by()
    return Subquery(jobs.values("run").annotate(at=Min("available_at")).values("at")[:1], output_field=DateTimeField())


def _deferred() -> Subquery:
    # A job deferred by an AI rate limit carries its reason until it is claimed again.
    jobs = WorkflowJob.objects.filter(run=OuterRef("pk"), status=Status.PENDING, wait_reason__isnull=False)
    return Subquery(jobs.order_by("available_at").values("wait_reason")[:1])


def annotate(queryset: Any) -> Any:
    """The run list's queryset with ``wait_poll_at``, ``wait_retry_at``, ``wait_deferred`` and ``wait_signal``
    (correlated, for the page's rows)."""
    return queryset.annotate(
        wait_poll_at=_next_poll(), wait_retry_at=_retry_at(), wait_deferred=_deferred(), wait_signal=_signal_name()
    )


# A line under the status badge, wrapped, so the list keeps its width.
WAIT_STYLE = "display:block;max-width:14em;margin-top:2px;font-size:11px;white-space:normal"


def list_text(run: Any) -> Any:
    """Why a run waits, and its deadline, for the run list's status cell ("" when neither)."""
    text = _wait_text(run)
    deadline = getattr(run, "deadline_at", None)
    if deadline is None or run.status not in (Status.PENDING, Status.RUNNING, Status.SUSPENDED):
        return text
    return format_html(
        '{}<span class="dwe-deadline" style="{}">deadline {}</span>',
        text,
        WAIT_STYLE,
        timezone.localtime(deadline).strftime("%Y-%m-%d %H:%M"),
    )


def _wait_text(run: Any) -> Any:
    if is_scheduled(run):
        return format_html(
            '<span class="dwe-wait" style="{}">scheduled for {}</span>',
            WAIT_STYLE,
            f"{timezone.localtime(run.scheduled_at):%Y-%m-%d %H:%M:%S}",
        )
    if run.status == Status.PENDING and run.concurrency_key is not None:
        return format_html('<span class="dwe-wait" style="{}">{}</span>', WAIT_STYLE, slot_text(run))
    if run.status != Status.RUNNING:
        return ""
    deferred = getattr(run, "wait_deferred", None)
    if deferred:
        return format_html('<span class="dwe-wait" style="{}">{}</span>', WAIT_STYLE, deferred)
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
    """Runs that wait: for a concurrency slot, an AI rate limit, a suspended stage's poll, or a retry's backoff."""

    title = "waiting"
    parameter_name = "waiting"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("input", "for input (a signal)"),
            ("slot", "for a concurrency slot"),
            ("rate", "for an AI rate limit"),
            ("scheduled", "scheduled (delayed start)"),
            ("any", "for anything (input, slot, schedule, rate limit, poll, retry)"),
        ]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        slot = Q(status=Status.PENDING, concurrency_key__isnull=False)
        scheduled = Q(status__in=(Status.RUNNING, Status.PENDING), scheduled_at__gt=timezone.now())
        if self.value() == "slot":
            return queryset.filter(slot)
        deferred = WorkflowJob.objects.filter(run=OuterRef("pk"), status=Status.PENDING, wait_reason__isnull=False)
        if self.value() == "rate":
            return queryset.filter(Exists(deferred), status=Status.RUNNING)
        if self.value() == "scheduled":
            return queryset.filter(scheduled)
        if self.value() == "input":
            return queryset.filter(Q(status=Status.RUNNING) & Exists(signal_waits()))
        if self.value() == "any":
            suspended = WorkflowStage.objects.filter(run=OuterRef("pk"), status=Status.SUSPENDED)
            retry = WorkflowJob.objects.filter(
                run=OuterRef("pk"), status=Status.PENDING, attempt__gt=0, available_at__gt=timezone.now()
            )
            return queryset.filter(
                slot | scheduled | Q(status=Status.RUNNING) & (Exists(suspended) | Exists(retry) | Exists(deferred))
            )
        return queryset
