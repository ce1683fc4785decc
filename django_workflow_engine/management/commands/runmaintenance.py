from __future__ import annotations

import argparse
import signal
from typing import Any

from django.core.management.base import BaseCommand


def _interval(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError("a number of seconds") from None
    if not 0 < seconds <= 3600:
        raise argparse.ArgumentTypeError("between 0 and 3600 seconds")
    return seconds


class Command(BaseCommand):
    help = (
        "Run the maintenance loop: fire due schedules, claim pending runs, poll suspended stages, reap stale leases and stuck runs, "
        "flush the outbox, re-send lost RQ messages."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--interval", type=_interval, default=None, help="seconds between ticks")
        parser.add_argument("--once", action="store_true", help="run one tick and exit")
        parser.add_argument("--worker-id", default="maintenance")

    def handle(self, *args: Any, **options: Any) -> None:
        from django_workflow_engine.hosts.maintenance import MaintenanceLoop

        loop = MaintenanceLoop(interval=options["interval"], worker_id=options["worker_id"])
        if not options["once"]:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: loop._stop.set())
        result = loop.run(once=options["once"])
        if options["once"] and result is not None:
            self.stdout.write(
                f"claimed={result.claimed} polled={result.suspended_checked} resumed={result.resumed} "
                f"stale_released={result.stale_released} events={result.events_flushed} stuck={result.stuck_reaped} "
                f"requeued={result.requeued} redispatched={result.redispatched} schedules={result.schedules_fired} errors={','.join(result.errors) or '-'}"
            )
