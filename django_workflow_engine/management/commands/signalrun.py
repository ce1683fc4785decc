from __future__ import annotations

import argparse
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError


def _json(value: str) -> Any:
    try:
        return json.loads(value)
    except (json.JSONDecodeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None


class Command(BaseCommand):
    help = "Deliver a signal to a run (a stage defined with define_signal_stage waits for it)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("run_id")
        parser.add_argument("name", help="the signal's name")
        parser.add_argument("--payload", type=_json, default=None, help="the payload as JSON")
        parser.add_argument("--idempotency-key", default=None, help="a repeat with the same key does nothing")
        parser.add_argument("--actor", default="cli", help="who sends it (default: cli)")

    def handle(self, *args: Any, **options: Any) -> None:
        from django_workflow_engine import engine
        from django_workflow_engine.errors import WorkflowEngineError

        try:
            result = engine.signal(
                options["run_id"],
                options["name"],
                options["payload"],
                idempotency_key=options["idempotency_key"],
                actor=options["actor"],
            )
        except WorkflowEngineError as exc:
            raise CommandError(str(exc), returncode=2) from None
        if result.duplicate:
            self.stdout.write(f"Signal {result.signal_id} was already delivered with this key; nothing done.")
        elif result.stage_id:
            self.stdout.write(f"Signal {result.signal_id} delivered: stage {result.stage_id} resumed.")
        else:
            self.stdout.write(f"Signal {result.signal_id} stored: it is consumed when its stage waits for it.")
