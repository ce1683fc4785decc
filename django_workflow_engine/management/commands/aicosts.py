"""``manage.py aicosts``: AI spend grouped by model, workflow, stage or day."""

from __future__ import annotations

import argparse
import json
import re
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand

UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
UNIT_MINUTES = {"m": 1, "h": 60, "d": 1440, "w": 10080}
MAX_DAYS = 36_500  # 100 years; far longer windows would reach before year 1, which no datetime can hold
GROUPS = {
    "model": ("by_model", ["model_id"]),
    "workflow": ("by_workflow", ["workflow_id"]),
    "stage": ("by_stage", ["workflow_id", "stage_name"]),
    "day": ("by_day", ["day"]),
}
COLUMNS = ["calls", "input_tokens", "output_tokens", "cost", "unpriced", "errors"]


def duration(value: str) -> timedelta:
    """``"7d"`` -> 7 days; units m, h, d, w."""
    match = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", value or "")
    if not match or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a duration: use a positive number and a unit, e.g. 30m, 12h, 7d, 2w"
        )
    number, unit = int(match.group(1)), match.group(2)
    if number * UNIT_MINUTES[unit] > MAX_DAYS * 1440:
        raise argparse.ArgumentTypeError(f"{value!r} is too long: the longest window is {MAX_DAYS}d (100 years)")
    return timedelta(**{UNITS[unit]: number})


class Command(BaseCommand):
    help = "Show AI spend (from AICall rows) grouped by model, workflow, stage or day."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--since", type=duration, default=duration("7d"), help="window to report, e.g. 24h, 7d (default 7d)"
        )
        parser.add_argument("--by", choices=sorted(GROUPS), default="model", help="how to group (default model)")
        parser.add_argument("--format", choices=["table", "csv", "json"], default="table", help="output format")
        parser.add_argument("--workflow", default=None, help="only this workflow id")

    def handle(self, *args: Any, **options: Any) -> None:
        from django.utils import timezone

        from django_workflow_engine.ai.costs import display
        from django_workflow_engine.ai.export import SafeCSVWriter
        from django_workflow_engine.models import AICall

        qs = AICall.objects.between(timezone.now() - options["since"], None)
        if options["workflow"]:
            qs = qs.for_workflow(options["workflow"])
        method, keys = GROUPS[options["by"]]
        rows = list(getattr(qs, method)())
        totals = qs.totals()
        header = keys + COLUMNS

        def cells(row: dict[str, Any], names: list[str]) -> list[str]:
            out = []
            for name in names:
                value = row.get(name)
                if name == "cost":
                    out.append(display(value))
                elif value is None:
                    out.append("-")
                else:
                    out.append(str(value))
            return out

        fmt = options["format"]
        if fmt == "json":
            payload = {
                "since": (timezone.now() - options["since"]).isoformat(),
                "by": options["by"],
                "rows": [dict(zip(header, cells(r, header), strict=True)) for r in rows],
                "totals": dict(zip(COLUMNS, cells(totals, COLUMNS), strict=True)),
            }
            if totals["cache_hits"]:
                payload["cache"] = {"hits": totals["cache_hits"], "saved": display(totals["saved"])}
            self.stdout.write(json.dumps(payload, indent=2))
            return
        if fmt == "csv":
            # Ids go through the spreadsheet-safe writer the admin's export uses; a missing id is written "-".
            writer = SafeCSVWriter(self.stdout, missing="-", lineterminator="\n")
            writer.writerow(header)
            for row in rows:
                writer.writerow([display(row.get(name)) if name == "cost" else row.get(name) for name in header])
            return
        table = (
            [header] + [cells(r, header) for r in rows] + [["TOTAL"] + [""] * (len(keys) - 1) + cells(totals, COLUMNS)]
        )
        widths = [max(len(line[i]) for line in table) for i in range(len(header))]
        for n, line in enumerate(table):
            self.stdout.write(
                "  ".join(
                    c.ljust(w) if i < len(keys) else c.rjust(w)
                    for i, (c, w) in enumerate(zip(line, widths, strict=True))
                ).rstrip()
            )
            if n == 0 or n == len(table) - 2:
                self.stdout.write("  ".join("-" * w for w in widths))
        if totals["unpriced"]:
            self.stdout.write(f"{totals['unpriced']} call(s) have no known price; their cost is not included.")
        if totals["cache_hits"]:
            self.stdout.write(
                f"The response cache answered {totals['cache_hits']} call(s) and saved {display(totals['saved'])}."
            )
