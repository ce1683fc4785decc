"""``AICall.objects``: cost queries as QuerySet methods, each evaluated in one SQL query.

``AICall.objects.for_workflow("doc-pipeline").between(start, end).by_model()`` -> one ``GROUP BY`` query.
Grouped methods return ``values()`` querysets of dicts with ``calls``, ``input_tokens``, ``output_tokens``,
``cached_tokens``, ``cost`` (sum of the priced calls), ``unpriced`` (calls with no known price),
``errors``, ``cache_hits`` (calls the response cache answered) and ``saved`` (what those would have cost),
ordered by their group key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import Count, F, Q, Sum, Value
from django.db.models.functions import Coalesce, TruncDate


def _aggregates() -> dict[str, Any]:
    zero_money = Value(0, output_field=models.DecimalField(max_digits=20, decimal_places=10))
    # Order matters: an aggregate named like a field shadows that field for the aggregates after it, so the
    # ones filtering on ``cost`` come before the ``cost`` sum.
    return {
        "cache_hits": Count("id", filter=Q(cached=True)),
        "calls": Count("id"),
        "unpriced": Count("id", filter=Q(cost__isnull=True)),
        "errors": Count("id", filter=Q(error__isnull=False)),
        "input_tokens": Coalesce(Sum("input_tokens"), 0),
        "output_tokens": Coalesce(Sum("output_tokens"), 0),
        "cached_tokens": Coalesce(Sum("cached_tokens"), 0),
        "cost": Coalesce(Sum("cost"), zero_money),
        "saved": Coalesce(Sum("saved_cost"), zero_money),  # what the response cache's answers would have cost
    }


class AICallQuerySet(models.QuerySet):
    """Filters and cost roll-ups over ``AICall`` rows."""

    def for_run(self, run: Any) -> AICallQuerySet:
        """Calls linked to a run (a ``WorkflowRun`` or its id)."""
        return self.filter(run_id=getattr(run, "pk", run))

    def for_workflow(self, workflow_id: str) -> AICallQuerySet:
        """Calls of every run of a workflow (runs since deleted included)."""
        return self.filter(workflow_id=workflow_id)

    def for_topic(self, prefix: str) -> AICallQuerySet:
        """Calls whose topic starts with ``prefix`` (``"workflow.<run_id>"`` covers its stages and tools)."""
        return self.filter(topic__startswith=prefix)

    def between(self, start: datetime | None = None, end: datetime | None = None) -> AICallQuerySet:
        """Calls made at or after ``start`` and before ``end`` (either may be ``None``)."""
        qs = self
        if start is not None:
            qs = qs.filter(created_at__gte=start)
        if end is not None:
            qs = qs.filter(created_at__lt=end)
        return qs

    def unpriced(self) -> AICallQuerySet:
        """Calls whose cost is unknown (no price for the model)."""
        return self.filter(cost__isnull=True)

    def totals(self) -> dict[str, Any]:
        """``{"calls", "input_tokens", "output_tokens", "cached_tokens", "cost", "unpriced", "errors"}``."""
        return self.aggregate(**_aggregates())

    def by_model(self) -> models.QuerySet:
        """One row per ``model_id``."""
        return self.order_by().values("model_id").annotate(**_aggregates()).order_by("model_id")

    def by_workflow(self) -> models.QuerySet:
        """One row per workflow (``workflow_id`` is ``None`` for calls outside any run)."""
        return (
            self.order_by()
            .values("workflow_id")
            .annotate(**_aggregates())
            .order_by(F("workflow_id").asc(nulls_last=True))
        )

    def by_stage(self) -> models.QuerySet:
        """One row per (workflow, stage id); calls of stage rows since deleted (reruns) keep their stage id."""
        return (
            self.order_by()
            .values("workflow_id", stage_name=F("stage_key"))
            .annotate(**_aggregates())
            .order_by(F("workflow_id").asc(nulls_last=True), F("stage_name").asc(nulls_last=True))
        )

    def by_day(self) -> models.QuerySet:
        """One row per calendar day (in the current time zone), oldest first."""
        return (
            self.order_by()
            .annotate(day=TruncDate("created_at"))
            .values("day")
            .annotate(**_aggregates())
            .order_by("day")
        )
