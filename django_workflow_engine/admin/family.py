"""A run's family on its page: the run that started it, the runs it started, and what they cost together."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.urls import reverse

from ..models import WorkflowRun
from .common import badge, fmt_cost


def relatives(run: WorkflowRun) -> dict[str, Any]:
    """The run's parent and children (one query, plus one per further generation of children), and the cost
    of the run with every descendant: each AI call belongs to exactly one run, so nothing is counted twice."""
    children = list(WorkflowRun.objects.filter(parent_run_id=run.pk).order_by("created_at", "id"))
    descendants_cost = sum((c.total_cost for c in children), Decimal(0))
    generation = [c.pk for c in children]
    while generation:
        below = list(WorkflowRun.objects.filter(parent_run_id__in=generation).values_list("pk", "total_cost"))
        descendants_cost += sum((cost for _, cost in below), Decimal(0))
        generation = [pk for pk, _ in below]
    app = WorkflowRun._meta.app_label
    return {
        "parent_url": reverse(f"admin:{app}_workflowrun_change", args=[run.parent_run_id])
        if run.parent_run_id
        else None,
        "children": [
            {
                "obj": c,
                "url": reverse(f"admin:{app}_workflowrun_change", args=[c.pk]),
                "status": badge(c.status),
                "cost": fmt_cost(c.total_cost),
            }
            for c in children
        ],
        "cost_with_children": fmt_cost(run.total_cost + descendants_cost) if children else None,
    }
