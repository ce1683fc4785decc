from __future__ import annotations

import argparse
import re
from typing import Any

from django.core.management.base import BaseCommand, CommandError


def _worker_id(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:@-]{1,100}", value):
        raise argparse.ArgumentTypeError("use 1-100 letters, digits or _.:@-")
    return value


def _queues(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names or not all(re.fullmatch(r"[A-Za-z0-9_.:-]{1,100}", n) for n in names):
        raise argparse.ArgumentTypeError("a comma-separated list of queue names")
    return names


class Command(BaseCommand):
    help = "Execute workflow stages: an RQ worker on the engine's queue, or a poller of the job table."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--queues", type=_queues, default=None, help="RQ queues (default: WORKFLOW_ENGINE['RQ_QUEUE'])"
        )
        parser.add_argument("--burst", action="store_true", help="exit when there is nothing left to do")
        parser.add_argument("--worker-id", type=_worker_id, default=None, help="lease holder id (default host:pid)")
        parser.add_argument("--with-maintenance", action="store_true", help="also run the maintenance loop here")
        parser.add_argument(
            "--transport", choices=["rq", "database"], default=None, help="override WORKFLOW_ENGINE['TRANSPORT']"
        )
        parser.add_argument("--fork", action="store_true", help="RQ only: fork a work horse per job")

    def handle(self, *args: Any, **options: Any) -> None:
        from django.conf import settings as django_settings

        from django_workflow_engine.conf import settings
        from django_workflow_engine.hosts.worker import Worker

        transport = options["transport"] or settings.TRANSPORT
        if transport == "rq" and options["queues"]:
            defined = getattr(django_settings, "RQ_QUEUES", None) or {}
            undefined = [name for name in options["queues"] if name not in defined]
            if undefined:
                raise CommandError(
                    f"--queues: {', '.join(undefined)} not defined in RQ_QUEUES "
                    f"(defined: {', '.join(sorted(defined)) or 'none'}).",
                    returncode=2,
                )
        Worker(
            queues=options["queues"],
            burst=options["burst"],
            worker_id=options["worker_id"],
            with_maintenance=options["with_maintenance"],
            transport=options["transport"],
            fork=options["fork"],
        ).run()
