"""``manage.py deadletters list|replay``: the events that failed their plugins, and their replay."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "List dead-lettered events (events that failed their plugins) with their last error, or replay them."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="dead letters, newest first")
        listing.add_argument("--run", default=None, help="only the events of this run id")
        listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
        listing.add_argument("--json", action="store_true", help="one JSON array")
        again = sub.add_parser("replay", help="deliver dead letters again at the next outbox flush")
        again.add_argument("event_ids", nargs="*", type=int, help="event ids (from 'list')")
        again.add_argument("--all", action="store_true", help="every dead letter")

    def handle(self, *args: Any, **options: Any) -> None:
        from django_workflow_engine import engine
        from django_workflow_engine.ops.dead_letters import dead_letters, replay

        if options["action"] == "list":
            if not 1 <= options["limit"] <= 10000:
                raise CommandError(f"--limit is {options['limit']}: use 1 to 10000.", returncode=2)
            events = dead_letters(run_id=options["run"], limit=options["limit"])
            rows: list[dict[str, Any]] = [
                {
                    "id": e.id,
                    "run_id": e.run_id,
                    "sequence": e.sequence,
                    "event_type": e.event_type,
                    "retries": e.retry_count,
                    "dead_lettered_at": e.dlq_at.isoformat() if e.dlq_at else None,
                    "error": e.last_error,
                }
                for e in events
            ]
            if options["json"]:
                self.stdout.write(json.dumps(rows, indent=2))
                return
            if not rows:
                self.stdout.write("No dead letters.")
            for r in rows:
                error = str(r["error"]).splitlines()[0][:100] if r["error"] else "-"
                self.stdout.write(f"{r['id']}  {r['run_id']}  #{r['sequence']}  {r['event_type']}  {error}")
            return
        if options["all"] == bool(options["event_ids"]):
            raise CommandError("replay: give event ids or --all (not both).", returncode=2)
        replayed = replay(engine.kernel, None if options["all"] else options["event_ids"])
        self.stdout.write(f"{replayed} event(s) will be delivered again at the next outbox flush.")
