"""The cost report: AI spend by model, workflow, stage and day for a date range, a daily chart, CSV export.

Two aggregate queries over the range (the ``created_at`` index bounds them) feed the four tables: calls grouped by
(model, day) roll up to the model and day tables, calls grouped by (workflow, stage) to the stage and workflow
tables, and the totals are summed from the per-model rows in Python. Workflow and stage ids are stored on each call
(``AICall.workflow_id``, ``stage_key``), so neither query joins another table: the page costs two scans of the
range however many calls it holds, and a call keeps its attribution when its run is deleted.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from ..ai.export import SafeCSVWriter
from ..models import AICall
from .charts import daily_cost_chart
from .common import fmt_cost, fmt_int, refuse_nul_bytes

DEFAULT_DAYS = 30
MAX_DAYS = 731
TABLES = {
    "model": ("model", ["Model"], ["model_id"]),
    "workflow": ("workflow", ["Workflow"], ["workflow_id"]),
    "stage": ("stage", ["Workflow", "Stage"], ["workflow_id", "stage_key"]),
    "day": ("day", ["Day"], ["day"]),
}
AGGREGATES = {
    "calls": Count("pk"),
    "in_tokens": Sum("input_tokens"),
    "out_tokens": Sum("output_tokens"),
    "total_cost": Sum("cost"),
    "unpriced": Count("pk", filter=Q(cost__isnull=True)),
    # The response cache: calls it answered, and what the provider calls they replaced would have cost.
    "cache_hits": Count("pk", filter=Q(cached=True)),
    "saved": Sum("saved_cost"),
}


class RangeForm(forms.Form):
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        end = data.get("end") or timezone.localdate()
        start = data.get("start") or end - timedelta(days=DEFAULT_DAYS - 1)
        if start > end:
            raise forms.ValidationError("The start date must not be after the end date.")
        if (end - start).days >= MAX_DAYS:
            raise forms.ValidationError(f"Choose a range of at most {MAX_DAYS} days.")
        data["start"], data["end"] = start, end
        return data


def date_range(request: HttpRequest) -> tuple[RangeForm, date, date]:
    form = RangeForm(request.GET or None)
    if form.is_bound and form.is_valid():
        start, end = form.cleaned_data["start"], form.cleaned_data["end"]
    else:
        end = timezone.localdate()
        start = end - timedelta(days=DEFAULT_DAYS - 1)
        if not form.is_bound:
            form = RangeForm(initial={"start": start, "end": end})
    return form, start, end


def calls_in_range(start: date, end: date) -> Any:
    tz = timezone.get_current_timezone()
    lo = timezone.make_aware(datetime.combine(start, time.min), tz)
    hi = timezone.make_aware(datetime.combine(end + timedelta(days=1), time.min), tz)
    return AICall.objects.filter(created_at__gte=lo, created_at__lt=hi).order_by()


# Each table is rolled up from one of two grouped queries (see the module docstring).
SOURCES = {
    "model": ["model_id", "day"],
    "day": ["model_id", "day"],
    "workflow": ["workflow_id", "stage_key"],
    "stage": ["workflow_id", "stage_key"],
}


def grouped_calls(group_by: list[str], start: date, end: date) -> list[dict[str, Any]]:
    """One aggregate query: the range's calls grouped by ``group_by`` (``"day"``: the local calendar day)."""
    qs = calls_in_range(start, end)
    if "day" in group_by:
        qs = qs.annotate(day=TruncDate("created_at"))
    return list(qs.values(*group_by).annotate(**AGGREGATES).order_by())


def table_rows(
    key: str, start: date, end: date, grouped: dict[tuple[str, ...], list[dict[str, Any]]] | None = None
) -> list[dict[str, Any]]:
    """Rows of ``{labels: [...], calls, in_tokens, out_tokens, total_cost, unpriced}`` for one table, rolled up
    from its source query (``grouped`` caches source queries across tables)."""
    _, _, group_by = TABLES[key]
    source = tuple(SOURCES[key])
    cache = grouped if grouped is not None else {}
    if source not in cache:
        cache[source] = grouped_calls(list(source), start, end)
    rows = _rollup(cache[source], group_by)
    if key == "day":
        rows.sort(key=lambda r: r["day"])
    else:
        rows.sort(
            key=lambda r: [r["total_cost"] is None, -(r["total_cost"] or 0), *(_nulls_last(r[g]) for g in group_by)]
        )
    for row in rows:
        row["labels"] = [row[g] if row[g] is not None else "(none)" for g in group_by]
    return rows


def _rollup(rows: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    """Sum grouped rows over ``keys``; a sum stays ``None`` when every summed value is (as SQL's ``SUM``)."""
    totals: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        group = tuple(row[k] for k in keys)
        total = totals.get(group)
        if total is None:
            totals[group] = total = {**dict(zip(keys, group, strict=True)), "calls": 0, "unpriced": 0}
            total.update(in_tokens=None, out_tokens=None, total_cost=None, cache_hits=0, saved=None)
        total["calls"] += row["calls"]
        total["unpriced"] += row["unpriced"]
        total["cache_hits"] += row["cache_hits"]
        for name in ("in_tokens", "out_tokens", "total_cost", "saved"):
            if row[name] is not None:
                total[name] = row[name] if total[name] is None else total[name] + row[name]
    return list(totals.values())


def _nulls_last(value: Any) -> tuple[bool, Any]:
    return (value is None, "" if value is None else value)


def costs_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    refuse_nul_bytes(request)
    form, start, end = date_range(request)
    tables = []
    by_key: dict[str, list[dict[str, Any]]] = {}
    grouped: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for key in ("model", "workflow", "stage", "day"):
        by_key[key] = rows = table_rows(key, start, end, grouped)
        if key == "day":
            continue
        title, headers, _ = TABLES[key]
        tables.append({"key": key, "title": title, "headers": headers, "rows": [_display(r) for r in rows]})
    day_costs = {r["day"]: r["total_cost"] or Decimal(0) for r in by_key["day"]}
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    series = [(d, day_costs.get(d, Decimal(0))) for d in days]
    tables.append(
        {"key": "day", "title": "day", "headers": ["Day"], "rows": [_display(r) for r in reversed(by_key["day"])]}
    )
    models = by_key["model"]
    total_cost = sum((r["total_cost"] or Decimal(0) for r in models), Decimal(0))
    unpriced = sum(r["unpriced"] for r in models)
    cache_hits = sum(r["cache_hits"] for r in models)
    saved = sum((r["saved"] or Decimal(0) for r in models), Decimal(0))
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": "AI costs",
        "subtitle": None,
        "form": form,
        "start": start,
        "end": end,
        "days": days,
        "tz": timezone.get_current_timezone_name(),
        "tables": tables,
        "chart": daily_cost_chart(series),
        "totals": {
            "calls": fmt_int(sum(r["calls"] for r in models)),
            "input_tokens": fmt_int(sum(r["in_tokens"] or 0 for r in models)),
            "output_tokens": fmt_int(sum(r["out_tokens"] or 0 for r in models)),
            "cost": fmt_cost(total_cost),
            "unpriced": unpriced,
            "cache_hits": fmt_int(cache_hits) if cache_hits else None,
            "saved": fmt_cost(saved),
        },
        "csv_url": reverse(f"admin:{model_admin.opts.app_label}_aicall_costs_csv")
        + "?"
        + urlencode({"start": start.isoformat(), "end": end.isoformat()}),
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/django_workflow_engine/aicall/costs.html", context)


def _display(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "labels": [str(label) for label in row["labels"]],
        "calls": fmt_int(row["calls"]),
        "input_tokens": fmt_int(row["in_tokens"] or 0),
        "output_tokens": fmt_int(row["out_tokens"] or 0),
        "cost": fmt_cost(row["total_cost"]),  # "—" when every call was unpriced: unknown, not $0
        "unpriced": row["unpriced"],
    }


def costs_csv_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    refuse_nul_bytes(request)
    key = request.GET.get("table") or "day"
    if key not in TABLES:
        # Plain text, and the value is not echoed: this answer must never be something a browser renders.
        refused = HttpResponseBadRequest(
            f"Unknown table in ?table=: choose one of {', '.join(TABLES)}.", content_type="text/plain; charset=utf-8"
        )
        refused["X-Content-Type-Options"] = "nosniff"
        return refused
    _, start, end = date_range(request)
    _, headers, _ = TABLES[key]
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="ai-costs-by-{key}-{start:%Y%m%d}-{end:%Y%m%d}.csv"'
    response["X-Content-Type-Options"] = "nosniff"
    writer = SafeCSVWriter(response)
    writer.writerow([h.lower() for h in headers] + ["calls", "input_tokens", "output_tokens", "cost", "unpriced_calls"])
    for row in table_rows(key, start, end):
        tokens = [row["in_tokens"] or 0, row["out_tokens"] or 0]
        writer.writerow([*row["labels"], row["calls"], *tokens, row["total_cost"], row["unpriced"]])
    return response
