"""Live per-stage progress of a few runs in the terminal: a refreshing table on a TTY, one line per change
otherwise (so piped or logged output stays readable)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django_workflow_engine.models import WorkflowRun, WorkflowStage

STYLE = {
    "PENDING": "dim",
    "RUNNING": "yellow",
    "SUSPENDED": "cyan",
    "COMPLETED": "green",
    "FAILED": "red",
    "CANCELLED": "magenta",
    "SKIPPED": "dim",
}
FINISHED = frozenset({"COMPLETED", "FAILED", "CANCELLED"})


class StageProgress:
    """Tracks the stage statuses of ``runs``; call :meth:`refresh` whenever something may have changed.

    Args:
        console: a ``rich.console.Console``.
        runs: the runs to watch.
        labels: a short label per run id (the ticket id, say).
        stage_ids: the stages, in pipeline order (the table's columns).
        ask: a signal stage: a run waiting in it (SUSPENDED) waits for a person, and counts as settled.
    """

    def __init__(
        self,
        console: Any,
        runs: Sequence[WorkflowRun],
        labels: dict[str, str],
        stage_ids: Sequence[str],
        ask: str | None = None,
    ):
        self.console = console
        self.ask = ask
        self.run_ids = [run.id for run in runs]
        self.labels = labels
        self.stage_ids = list(stage_ids)
        self.seen: dict[tuple[str, str], str] = {}
        self.run_status: dict[str, str] = {run.id: run.status for run in runs}
        self.live: Any = None

    def __enter__(self) -> StageProgress:
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(self._table(), console=self.console, refresh_per_second=12, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self._table())
            self.live.__exit__(*exc)

    @property
    def finished(self) -> bool:
        return all(status in FINISHED for status in self.run_status.values())

    @property
    def asking(self) -> list[str]:
        """Runs waiting for a person: their ``ask`` stage is SUSPENDED."""
        return [
            run_id
            for run_id in self.run_ids
            if self.ask is not None
            and self.run_status.get(run_id) == "RUNNING"
            and self.seen.get((run_id, self.ask)) == "SUSPENDED"
        ]

    @property
    def settled(self) -> bool:
        """Every run finished or waiting for a person."""
        waiting = set(self.asking)
        return all(status in FINISHED or run_id in waiting for run_id, status in self.run_status.items())

    def refresh(self, *_: Any) -> None:
        """Read the current statuses (two queries) and show what changed. Accepts and ignores a ``JobOutcome``,
        so it can be passed as ``engine.run_until_idle(on_stage=...)``."""
        rows = WorkflowStage.objects.filter(run_id__in=self.run_ids).values_list(
            "run_id", "stage_id", "status", "duration_ms"
        )
        changes = []
        for run_id, stage_id, status, duration_ms in rows:
            if self.seen.get((run_id, stage_id)) != status:
                self.seen[(run_id, stage_id)] = status
                changes.append((run_id, stage_id, status, duration_ms))
        self.run_status.update(WorkflowRun.objects.filter(pk__in=self.run_ids).values_list("id", "status"))
        if self.live is not None:
            self.live.update(self._table())
            return
        order = {stage_id: i for i, stage_id in enumerate(self.stage_ids)}
        for run_id, stage_id, status, duration_ms in sorted(changes, key=lambda c: order.get(c[1], 99)):
            if status == "PENDING":  # queued: the line that matters is the one saying how it ended
                continue
            took = f"{duration_ms:>6} ms" if duration_ms is not None and status in FINISHED else ""
            self.console.print(
                f"  {self.labels[run_id]:<8} {stage_id:<10} [{STYLE.get(status, 'white')}]{status:<9}[/] {took}"
            )

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title="stage progress", title_justify="left", box=None, pad_edge=False)
        table.add_column("ticket")
        for stage_id in self.stage_ids:
            table.add_column(stage_id)
        table.add_column("run")
        for run_id in self.run_ids:
            cells = []
            for stage_id in self.stage_ids:
                status = self.seen.get((run_id, stage_id))
                cells.append(f"[{STYLE[status]}]{status.lower()}[/]" if status else "[dim]·[/]")
            run_status = self.run_status.get(run_id, "")
            table.add_row(self.labels[run_id], *cells, f"[{STYLE.get(run_status, 'white')}]{run_status.lower()}[/]")
        return table
