"""Shared pieces of the admin: read-only base class, badges, formatting, list filters, a cheap paginator."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import BadRequest
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import capfirst
from django.utils.translation import gettext as _

from ..adapters.statements import POSTGRESQL, dialect, estimated_count
from ..core.ids import short_id
from ..models import Status
from ..models.status import ACTIVE as ACTIVE  # re-exported: the admin modules import them from here
from ..models.status import RERUNNABLE as RERUNNABLE

STATUS_COLORS = {
    Status.PENDING: ("#5b6770", "#eef1f3"),
    Status.RUNNING: ("#0b5394", "#e3eefa"),
    Status.SUSPENDED: ("#8a5a00", "#fdf1d8"),
    Status.COMPLETED: ("#1e6b34", "#e2f4e6"),
    Status.FAILED: ("#a61b1b", "#fbe4e4"),
    Status.CANCELLED: ("#5b4a78", "#eee9f6"),
    Status.SKIPPED: ("#5b6770", "#f3f3f3"),
}
LEVEL_COLORS = {
    "DEBUG": ("#5b6770", "#f3f3f3"),
    "INFO": ("#0b5394", "#e3eefa"),
    "WARN": ("#8a5a00", "#fdf1d8"),
    "ERROR": ("#a61b1b", "#fbe4e4"),
}


def badge(value: str, colors: dict[Any, tuple[str, str]] | None = None) -> SafeString:
    """A small coloured pill for a status or log level (inline style: the admin ships no extra CSS file)."""
    fg, bg = (colors or STATUS_COLORS).get(value, ("#333", "#eee"))
    return format_html(
        '<span class="dwe-badge" style="display:inline-block;padding:1px 8px;border-radius:10px;font-size:11px;'
        'font-weight:600;letter-spacing:.02em;color:{};background:{};border:1px solid {}">{}</span>',
        fg,
        bg,
        fg,
        value,
    )


def level_badge(value: str) -> SafeString:
    return badge(value, LEVEL_COLORS)


def pretty_json(value: Any) -> SafeString:
    """Indented JSON in a ``<pre>``; every character of the value is escaped."""
    if value is None:
        return format_html('<span class="quiet">{}</span>', "—")
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre class="dwe-json">{}</pre>', text)


def fmt_cost(value: Decimal | float | None) -> str:
    """``$0.0123``; ``—`` when unknown (an unpriced model is not free)."""
    if value is None:
        return "—"
    value = Decimal(value)
    if value == 0:
        return "$0"
    places = 4 if abs(value) >= Decimal("0.01") else 6
    return f"${value:,.{places}f}"


def fmt_int(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def fmt_duration(ms: int | float | None) -> str:
    """``850 ms``, ``12.3 s``, ``4 min 5 s``, ``2 h 3 min``."""
    if ms is None:
        return "—"
    ms = int(ms)
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def elapsed_ms(started: datetime | None, finished: datetime | None, stored_ms: int | None = None) -> int | None:
    """The stored duration, or the time from ``started`` to ``finished`` (or now, while still going)."""
    if stored_ms is not None:
        return stored_ms
    if started is None:
        return None
    return max(0, int(((finished or timezone.now()) - started) / timedelta(milliseconds=1)))


def admin_change_url(obj: Any) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])


def run_link(run_id: str | None) -> SafeString:
    """Link to a run page, labelled with its short id; built from the foreign key column (no join needed)."""
    if not run_id:
        return format_html('<span class="quiet">{}</span>', "—")
    url = reverse(f"admin:{RUN_APP}_workflowrun_change", args=[run_id])
    return format_html('<a href="{}" title="{}"><code>{}</code></a>', url, run_id, short_id(run_id))


RUN_APP = "django_workflow_engine"


def refuse_nul_bytes(request: Any, *values: str) -> None:
    """Answer 400 for a NUL byte in a query or form parameter (name or value) or in ``values`` (object ids).

    PostgreSQL refuses NUL in text, so a filter, search or lookup carrying one would fail as a database error
    (HTTP 500); no legitimate id, filter value or search term contains one.
    """
    params = (request.GET, request.POST) if request.method == "POST" else (request.GET,)
    texts = [*values, *(text for query in params for key, vals in query.lists() for text in (key, *vals))]
    if any("\x00" in text for text in texts if isinstance(text, str)):
        raise BadRequest("A request parameter contains a NUL byte.")


def missing_object_redirect(model_admin: Any, request: HttpRequest, object_id: str) -> HttpResponseRedirect:
    """What Django's admin answers for an object id that does not exist: a warning and the admin index."""
    # Django's own message, so its translations apply.
    text = _("%(name)s with ID “%(key)s” doesn’t exist. Perhaps it was deleted?")  # noqa: RUF001
    message = text % {"name": capfirst(model_admin.opts.verbose_name), "key": unquote(object_id)}
    model_admin.message_user(request, message, messages.WARNING)
    return HttpResponseRedirect(reverse("admin:index", current_app=model_admin.admin_site.name))


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows are written by the engine; the admin only shows them.

    ``has_view_permission`` keeps Django's meaning (view or change permission), so a user with only
    ``view_<model>`` sees every page.
    """

    show_full_result_count = False  # a second COUNT(*) over a large table for "x of y" is not worth it
    show_facets = admin.ShowFacets.NEVER  # facet counts are one COUNT per filter choice over the whole table
    list_per_page = 50

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    changelist_defer: tuple[str, ...] = ()
    """Columns (incl. ``related__column``) the list never shows: large JSON or text is not read for a list."""

    def changelist_view(self, request: Any, extra_context: dict[str, Any] | None = None) -> Any:
        refuse_nul_bytes(request)
        return super().changelist_view(request, extra_context)

    def change_view(self, request: Any, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        refuse_nul_bytes(request, object_id)
        return super().change_view(request, object_id, form_url, extra_context)

    def history_view(self, request: Any, object_id: str, extra_context: Any = None) -> Any:
        refuse_nul_bytes(request, object_id)
        return super().history_view(request, object_id, extra_context)

    def delete_view(self, request: Any, object_id: str, extra_context: Any = None) -> Any:
        refuse_nul_bytes(request, object_id)
        return super().delete_view(request, object_id, extra_context)

    def get_changelist(self, request: Any, **kwargs: Any) -> type[ChangeList]:
        defer = self.changelist_defer

        class DeferringChangeList(ChangeList):
            def get_queryset(self, request: Any, exclude_parameters: Any = None) -> Any:
                qs = super().get_queryset(request, exclude_parameters)
                return qs.defer(*defer) if defer else qs

        return DeferringChangeList

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: QuerySet[Any, Any],
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> Paginator:
        return EstimatedCountPaginator(queryset, per_page, orphans, allow_empty_first_page)


class EstimatedCountPaginator(Paginator):
    """Counts exactly, except an unfiltered list of a large PostgreSQL table, which uses the planner's estimate.

    ``COUNT(*)`` over millions of rows reads the whole table (or index) on every page view; the admin only needs
    the number for "N workflow runs" and the page links, where an estimate is fine.
    """

    ESTIMATE_ABOVE = 100_000

    @cached_property
    def count(self) -> int:
        qs: Any = self.object_list  # a QuerySet from the admin (the paginator's type allows any sequence)
        query = getattr(qs, "query", None)
        if query is not None and not query.where and not query.distinct:
            connection = connections[qs.db]
            if dialect(connection) is POSTGRESQL:
                with connection.cursor() as cursor:
                    cursor.execute(*estimated_count(qs.model._meta.db_table, self.ESTIMATE_ABOVE))
                    return int(cursor.fetchone()[0])
        return super().count


class ValueFilter(admin.SimpleListFilter):
    """A filter set from a link (``?run=<id>``): lists no choices from the database, only the active value.

    Listing every run id as a choice would read the whole table; pages link to a filtered list instead.
    """

    field = ""

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        value = self.value()
        return [(value, self.label_for(value))] if value else []

    def label_for(self, value: str) -> str:
        return value

    def queryset(self, request: Any, queryset: Any) -> Any:
        value = self.value()
        if value:
            return queryset.filter(**{self.field: value})
        return queryset

    def has_output(self) -> bool:
        return True


class RunFilter(ValueFilter):
    title = "run"
    parameter_name = "run"
    field = "run_id"

    def label_for(self, value: str) -> str:
        return short_id(value)


class StageIdFilter(admin.SimpleListFilter):
    """Stage ids known to the registry (no query)."""

    title = "stage"
    parameter_name = "stage_id"
    field = "stage__stage_id"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        from ..registry import registry

        ids: set[str] = set()
        for workflow in registry.all():
            ids.update(workflow.stage_ids())
        value = self.value()
        if value:
            ids.add(value)
        return [(i, i) for i in sorted(ids)]

    def queryset(self, request: Any, queryset: Any) -> Any:
        value = self.value()
        return queryset.filter(**{self.field: value}) if value else queryset


class WorkflowFilter(admin.SimpleListFilter):
    """Workflow ids from the registry: no ``SELECT DISTINCT`` over the whole table."""

    title = "workflow"
    parameter_name = "workflow"
    field = "workflow_id"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        from ..registry import registry

        choices = [(w.id, w.name or w.id) for w in registry.all()]
        value = self.value()
        if value and value not in {c[0] for c in choices}:
            choices.append((value, value))
        return choices

    def queryset(self, request: Any, queryset: Any) -> Any:
        value = self.value()
        return queryset.filter(**{self.field: value}) if value else queryset


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word if n == 1 else (words or word + 's')}"
