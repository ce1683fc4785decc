"""Map stages on the run page: one row per map with its items' counts and a link to them.

A map's items are stage records of their own (``square[0]``, ``square[1]``...), as many as ``MAX_MAP_ITEMS``;
the run page shows the map's own record and counts its items in one grouped query instead of listing them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count
from django.urls import reverse

from ..models import WorkflowStage
from ..models.status import Status

# What each item status counts as on the page: a retrying item (FAILED, its job due again) counts as failed
# until its next attempt begins.
BUCKETS = {
    Status.COMPLETED: "done",
    Status.RUNNING: "running",
    Status.SUSPENDED: "running",
    Status.FAILED: "failed",
    Status.PENDING: "waiting",
    Status.CANCELLED: "cancelled",
}


@dataclass(frozen=True)
class MapCounts:
    """A map's items by state, and the stage list filtered to them."""

    done: int = 0
    running: int = 0
    failed: int = 0
    waiting: int = 0
    cancelled: int = 0
    url: str = ""

    @property
    def total(self) -> int:
        return self.done + self.running + self.failed + self.waiting + self.cancelled

    def summary(self) -> str:
        text = f"{self.done} done · {self.running} running · {self.failed} failed · {self.waiting} waiting"
        return text + (f" · {self.cancelled} cancelled" if self.cancelled else "")


def map_counts(run: Any, stages: list[WorkflowStage]) -> dict[str, MapCounts]:
    """``{map stage id: MapCounts}`` for the map records among ``stages`` (the run's current non-item records);
    one query, none when the run has no map."""
    maps = {s.execution_group: s.stage_id for s in stages if isinstance(s.metrics, dict) and "map_items" in s.metrics}
    if not maps:
        return {}
    counts: dict[str, dict[str, int]] = {stage_id: {} for stage_id in maps.values()}
    rows = (
        WorkflowStage.objects.filter(run=run, item_index__isnull=False, execution_group__in=list(maps))
        .order_by()
        .values_list("execution_group", "status")
        .annotate(n=Count("pk"))
    )
    for group, status, n in rows:
        bucket = counts[maps[group]]
        key = BUCKETS.get(status, "waiting")
        bucket[key] = bucket.get(key, 0) + n
    base = reverse(f"admin:{WorkflowStage._meta.app_label}_workflowstage_changelist")
    return {
        stage_id: MapCounts(**values, url=f"{base}?run={run.pk}&map={stage_id}") for stage_id, values in counts.items()
    }
