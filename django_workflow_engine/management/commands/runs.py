"""``manage.py runs``: list, show, cancel, rerun and follow runs from a shell (the admin's actions, no
permissions: the engine facade's semantics)."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from .aicosts import duration


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if not 1 <= number <= 10_000:
        raise argparse.ArgumentTypeError(f"{value} is out of range: use 1 to 10000")
    return number


def _interval(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0.01 <= number <= 3600:
        raise argparse.ArgumentTypeError(f"{value} is out of range: use 0.01 to 3600 seconds")
    return number


class Command(BaseCommand):
    help = "List, show, cancel, rerun and follow workflow runs."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="{list,show,cancel,rerun,logs}")

        ls = sub.add_parser("list", help="runs, newest first")
        ls.add_argument("--status", action="append", default=None, help="only this status (repeat or comma-separate)")
        ls.add_argument("--workflow", default=None, help="only this workflow id")
        ls.add_argument("--since", type=duration, default=None, help="only runs created in this window, e.g. 24h, 7d")
        ls.add_argument("--limit", type=_positive, default=50, help="at most this many runs (default 50)")
        ls.add_argument("--json", action="store_true", help="a JSON array instead of a table")

        show = sub.add_parser("show", help="a run: stages, last logs, AI cost")
        show.add_argument("run_id")
        show.add_argument("--logs", type=_positive, default=10, help="how many of the last log lines (default 10)")
        show.add_argument("--json", action="store_true")

        cancel = sub.add_parser("cancel", help="cancel a run that is not finished")
        cancel.add_argument("run_id")
        cancel.add_argument("--reason", default=None)
        cancel.add_argument("--json", action="store_true")

        rerun = sub.add_parser("rerun", help="run a COMPLETED or FAILED run again from a stage on")
        rerun.add_argument("run_id")
        rerun.add_argument("--from", dest="stage_id", required=True, metavar="STAGE", help="the stage id to rerun from")
        rerun.add_argument("--json", action="store_true")

        logs = sub.add_parser("logs", help="a run's log lines")
        logs.add_argument("run_id")
        logs.add_argument("--follow", "-f", action="store_true", help="keep printing new lines until the run ends")
        logs.add_argument("--interval", type=_interval, default=1.0, help="--follow polling period in seconds")
        logs.add_argument("--json", action="store_true", help="one JSON object per line")

    def handle(self, *args: Any, **options: Any) -> None:
        from django_workflow_engine.errors import WorkflowEngineError

        try:
            getattr(self, f"_{options['action']}")(options)
        except WorkflowEngineError as exc:
            # Exit status 2, like a usage error: the arguments were wrong, not the engine.
            raise CommandError(str(exc), returncode=2) from None

    # -- helpers ------------------------------------------------------------------------------------------------

    def _run(self, run_id: str) -> Any:
        from django_workflow_engine.models import WorkflowRun

        run = WorkflowRun.objects.filter(pk=run_id.strip()).first() if len(run_id) <= 32 else None
        if run is None:
            raise CommandError(f"run {run_id!r} not found: give the full 32-character run id", returncode=2)
        return run

    def _json(self, data: Any) -> None:
        self.stdout.write(json.dumps(data, indent=2, default=str))

    # -- actions ------------------------------------------------------------------------------------------------

    def _list(self, options: dict[str, Any]) -> None:
        from django.utils import timezone

        from django_workflow_engine.ops import runs

        statuses: list[str] = []
        for value in options["status"] or ():
            for part in value.split(","):
                status = part.strip().upper()
                if status not in runs.STATUSES:
                    raise CommandError(
                        f"--status {part.strip()!r} is not a run status: use one of {', '.join(runs.STATUSES)}",
                        returncode=2,
                    )
                statuses.append(status)
        since = timezone.now() - options["since"] if options["since"] else None
        rows = runs.list_runs(statuses=statuses, workflow=options["workflow"], since=since, limit=options["limit"])
        if options["json"]:
            self._json(rows)
            return
        if not rows:
            self.stdout.write("No runs.")
            return
        self.stdout.write(
            runs.table(
                ["run", "workflow", "status", "created", "duration", "cost", "tokens"],
                (
                    [
                        r["id"],
                        r["workflow_id"],
                        r["status"],
                        runs.when(_dt(r["created_at"])),
                        runs.seconds(r["duration_ms"]),
                        _money(r["total_cost"]),
                        r["total_tokens"],
                    ]
                    for r in rows
                ),
            )
        )

    def _show(self, options: dict[str, Any]) -> None:
        from django_workflow_engine.ops import runs

        data = runs.show_run(self._run(options["run_id"]), logs=options["logs"])
        if options["json"]:
            self._json(data)
            return
        w = self.stdout.write
        w(f"Run {data['id']}  {data['workflow_id']}  {data['status']}")
        w(
            f"created {runs.when(_dt(data['created_at']))}  started {runs.when(_dt(data['started_at']))}  "
            f"finished {runs.when(_dt(data['completed_at']))}  duration {runs.seconds(data['duration_ms'])}"
        )
        ai = data["ai"]
        w(
            f"AI: {ai['calls']} call(s), {ai['input_tokens']} in / {ai['output_tokens']} out tokens, "
            f"cost {_money(ai['cost'])}" + (f" ({ai['unpriced']} unpriced)" if ai["unpriced"] else "")
        )
        w("")
        w(
            runs.table(
                ["stage", "group", "status", "attempt", "started", "duration", "error"],
                (
                    [
                        s["stage_id"],
                        s["group"],
                        s["status"],
                        s["attempt"],
                        runs.when(_dt(s["started_at"])),
                        runs.seconds(s["duration_ms"]),
                        runs.one_line(s["error"], 60),
                    ]
                    for s in data["stages"]
                ),
            )
        )
        if data["logs"]:
            w("")
            w(f"Last {len(data['logs'])} log line(s):")
            for line in data["logs"]:
                w(_log_line(line))

    def _cancel(self, options: dict[str, Any]) -> None:
        from django_workflow_engine import engine

        run = self._run(options["run_id"])
        cancelled = engine.cancel(run.id, reason=options["reason"])
        run.refresh_from_db()
        if options["json"]:
            self._json({"id": run.id, "cancelled": cancelled, "status": run.status})
        elif cancelled:
            self.stdout.write(f"Cancelled run {run.id}")
        else:
            self.stdout.write(f"Run {run.id} is already {run.status}: nothing to cancel")

    def _rerun(self, options: dict[str, Any]) -> None:
        from django_workflow_engine import engine
        from django_workflow_engine.ops.runs import run_row

        run = engine.rerun_from(self._run(options["run_id"]).id, options["stage_id"])
        if options["json"]:
            self._json(run_row(run))
        else:
            self.stdout.write(f"Rerunning run {run.id} from stage {options['stage_id']} ({run.status})")

    def _logs(self, options: dict[str, Any]) -> None:
        from django_workflow_engine.ops.runs import logs_after

        run = self._run(options["run_id"])
        seen: set[int] = set()
        # Log rows of two transactions can commit out of id order, so each poll re-reads from the highest id
        # seen by the poll before the previous one, and skips the lines already printed.
        low = previous_high = high = 0
        while True:
            finished = run.is_finished
            for line in logs_after(run.id, low):
                if line["id"] in seen:
                    continue
                seen.add(line["id"])
                high = max(high, line["id"])
                self.stdout.write(json.dumps(line) if options["json"] else _log_line(line))
            self.stdout.flush()
            if not options["follow"] or finished:
                return
            low, previous_high = previous_high, high
            time.sleep(options["interval"])
            run.refresh_from_db(fields=["status"])


def _money(value: str) -> str:
    from decimal import Decimal

    return f"${Decimal(value).normalize():f}"


def _dt(value: str | None) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(value) if value else None


def _log_line(line: dict[str, Any]) -> str:
    from django_workflow_engine.ops.runs import when

    stage = f" [{line['stage_id']}]" if line["stage_id"] else ""
    return f"{when(_dt(line['created_at']))} {line['level']:<5}{stage} {line['message']}"
