"""``manage.py workerstatus``: exit 0 when workers are alive and the queue moves, 1 otherwise (for probes)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from django.core.management.base import BaseCommand


def _queues(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names or not all(re.fullmatch(r"[A-Za-z0-9_.:-]{1,100}", n) for n in names):
        raise argparse.ArgumentTypeError("a comma-separated list of queue names")
    return names


def _seconds(value: str) -> float:
    from django_workflow_engine.ops.retention import InvalidRetention, parse_age

    try:
        seconds = parse_age(value, field_name="--max-due-age").total_seconds()
    except InvalidRetention as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return seconds


class Command(BaseCommand):
    help = (
        "Check the workers: exit 1 when no live worker serves a queue, or the oldest due job has waited longer "
        "than --max-due-age; exit 0 otherwise. For container liveness/readiness probes."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--queues", type=_queues, default=None, help="queues that need a live worker (default: RQ_QUEUE)"
        )
        parser.add_argument(
            "--max-due-age", type=_seconds, default=None, help="fail when the oldest due job is older (e.g. 60s, 5m)"
        )
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        from django_workflow_engine.conf import settings
        from django_workflow_engine.ops.workers import check_health

        health = check_health(options["queues"] or [settings.RQ_QUEUE], options["max_due_age"])
        if options["json"]:
            self.stdout.write(json.dumps(health.as_dict(), indent=2))
        else:
            q = health.queue
            self.stdout.write(
                f"{len(health.workers)} live worker(s); jobs due {q.due}, scheduled {q.scheduled}, running "
                f"{q.running}; oldest due {q.oldest_due_seconds:.0f} s"
            )
            for worker in health.workers:
                doing = f"stage {worker.stage_id} of run {worker.run_id}" if worker.job_id else "idle"
                self.stdout.write(
                    f"  {worker.id}  {worker.transport}  {','.join(worker.queues)}  {doing}  "
                    f"{worker.stages_done} stage(s) done"
                )
            for problem in health.problems:
                self.stderr.write(f"UNHEALTHY: {problem}")
        if not health.ok:
            sys.exit(1)
