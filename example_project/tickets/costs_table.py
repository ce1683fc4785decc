"""The demo's cost tables, from ``AICall.objects`` roll-ups (one query each)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django_workflow_engine.ai.costs import display
from django_workflow_engine.models import AICall, WorkflowRun

COLUMNS = ("calls", "input_tokens", "output_tokens", "cost", "unpriced")


def cost_tables(runs: Sequence[WorkflowRun]) -> list[Any]:
    """Two ``rich`` tables for the AI calls of ``runs``, by model and by stage, each with a total row."""
    from rich.table import Table

    calls = AICall.objects.filter(run__in=runs)
    totals = calls.totals()
    tables = []
    for title, rows, key in (
        ("AI cost by model", calls.by_model(), "model_id"),
        ("AI cost by stage", calls.by_stage(), "stage_name"),
    ):
        table = Table(title=title, title_justify="left")
        table.add_column("model" if key == "model_id" else "stage", no_wrap=True, min_width=22)
        for name in ("calls", "input tokens", "output tokens", "cost (USD)", "unpriced"):
            table.add_column(name, justify="right")
        for row in rows:
            table.add_row(str(row[key] or "-"), *_cells(row))
        table.add_section()
        table.add_row("total", *_cells(totals), style="bold")
        tables.append(table)
    return tables


def _cells(row: dict[str, Any]) -> list[str]:
    return [display(row[name]) if name == "cost" else str(row[name]) for name in COLUMNS]
