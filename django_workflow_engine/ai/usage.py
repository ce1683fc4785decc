"""AI spend of one stage execution, summed into the stage's metrics."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .recording import fmt, run_sync
from .results import ZERO


class StageUsage:
    """AI spend of one stage execution, kept on the stage context; the kernel stores it in the stage's
    metrics as ``ai_cost`` / ``ai_tokens`` / ``ai_calls``, added to what its earlier executions stored.

    With a stage row, the spend is read from its ``AICall`` rows (less what the stage's metrics already hold), so
    a call recorded by an execution that died before storing its metrics is counted once, and a call replayed
    from the journal is not counted again: the stage's metrics always sum its rows (tool rows aside)."""

    def __init__(self, stage_pk: str | None = None) -> None:
        self.stage_pk = stage_pk
        self.cost = ZERO
        self.tokens = 0
        self.calls = 0

    def add(self, cost: Decimal, tokens: int) -> None:
        self.cost += cost
        self.tokens += tokens
        self.calls += 1

    def metrics(self) -> dict[str, Any]:
        if self.stage_pk:
            return run_sync(self._unmetered)
        return {"ai_cost": fmt(self.cost), "ai_tokens": self.tokens, "ai_calls": self.calls}

    def _unmetered(self) -> dict[str, Any]:
        from django.db.models import Count, F, Sum

        from ..models import AICall, WorkflowStage

        rows = (
            AICall.objects.filter(stage_id=self.stage_pk)
            .exclude(call_type="tool")
            .aggregate(cost=Sum("cost"), tokens=Sum(F("input_tokens") + F("output_tokens")), calls=Count("id"))
        )
        stored = WorkflowStage.objects.filter(pk=self.stage_pk).values_list("metrics", flat=True).first() or {}
        cost = (rows["cost"] or ZERO) - Decimal(str(stored.get("ai_cost") or 0))
        tokens = (rows["tokens"] or 0) - int(stored.get("ai_tokens") or 0)
        calls = rows["calls"] - int(stored.get("ai_calls") or 0)
        return {"ai_cost": fmt(max(cost, ZERO)), "ai_tokens": max(tokens, 0), "ai_calls": max(calls, 0)}
