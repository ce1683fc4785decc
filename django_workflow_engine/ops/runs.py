"""What ``manage.py runs`` shows: runs, a run's stages, logs and cost, as plain dicts (``--json``) or tables."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone

STATUSES = ("PENDING", "RUNNING", "SUSPENDED", "COMPLETED", "FAILED", "CANCELLED")


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def when(value: datetime | None) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def seconds(ms: int | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.1f}s"


def run_row(run: Any) -> dict[str, Any]:
    return {
        "id": run.id,
        "workflow_id": run.workflow_id,
        "status": run.status,
        "priority": run.priority,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "completed_at": iso(run.completed_at),
        "duration_ms": run.duration_ms,
        "total_cost": str(run.total_cost),
        "total_tokens": run.total_tokens,
    }


def list_runs(
    *, statuses: Sequence[str] = (), workflow: str | None = None, since: datetime | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Newest first; each filter narrows an indexed range of the run table."""
    from ..models import WorkflowRun

    qs = WorkflowRun.objects.order_by("-created_at", "-id").defer("input", "output", "config", "metadata")
    if statuses:
        qs = qs.filter(status__in=statuses)
    if workflow:
        qs = qs.filter(workflow_id=workflow)
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    return [run_row(run) for run in qs[:limit]]


def log_row(log: Any, stage_ids: dict[str, str]) -> dict[str, Any]:
    return {
        "id": log.id,
        "created_at": iso(log.created_at),
        "level": log.level,
        "stage_id": stage_ids.get(log.stage_id) if log.stage_id else None,
        "message": log.message,
    }


def logs_after(run_id: str, after_id: int = 0, *, limit: int | None = None) -> list[dict[str, Any]]:
    """The run's logs with an id above ``after_id``, oldest first (``limit``: the last ``limit`` of them)."""
    from ..models import WorkflowLog, WorkflowStage

    qs = WorkflowLog.objects.filter(run_id=run_id, id__gt=after_id)
    if limit is not None:
        logs = list(reversed(qs.order_by("-created_at", "-id")[:limit]))
    else:
        logs = list(qs.order_by("created_at", "id"))
    stage_ids = dict(
        WorkflowStage.objects.filter(id__in={log.stage_id for log in logs if log.stage_id}).values_list(
            "id", "stage_id"
        )
    )
    return [log_row(log, stage_ids) for log in logs]


def show_run(run: Any, *, logs: int = 10) -> dict[str, Any]:
    """The run, its stages in plan order, its last ``logs`` log lines and its AI cost."""
    from ..models import AICall

    stages = [
        {
            "stage_id": s.stage_id,
            "name": s.stage_name,
            "group": s.execution_group,
            "status": s.status,
            "attempt": s.attempt,
            "started_at": iso(s.started_at),
            "completed_at": iso(s.completed_at),
            "duration_ms": s.duration_ms,
            "error": s.error_message,
        }
        for s in run.stages.order_by("execution_group", "stage_number").defer("output_data", "suspended_state")
    ]
    totals = AICall.objects.for_run(run).totals()
    data = run_row(run)
    data.update(
        {
            "workflow_name": run.workflow_name,
            "input": run.input,
            "output": run.output,
            "stages": stages,
            "logs": logs_after(run.id, limit=logs),
            "ai": {key: str(value) if isinstance(value, Decimal) else value for key, value in totals.items()},
        }
    )
    return data


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain text table: columns padded to their widest cell."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def one_line(text: str | None, width: int = 80) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
