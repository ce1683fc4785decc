from __future__ import annotations

import argparse
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError


def _json(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None


class Command(BaseCommand):
    help = "Deliver a signal to a workflow run (resumes the stage waiting for it at once)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("run_id")
        parser.add_argument("name", help="the signal's name, e.g. approval")
        parser.add_argument("--payload", type=_json, default=None, help="the payload as JSON, e.g. '{\"ok\": true}'")
        parser.add_argument("--idempotency-key", default=None, help="a repeated call with this key does nothing")
        parser.add_argument("--actor", default=None, help="who sends it (default: signalrun)")

    def handle(self, *args: Any, **options: Any) -> None:
        from django_workflow_engine import engine
        from django_workflow_engine.errors import WorkflowEngineError

        try:
            result = engine.signal(
                options["run_id"],
                options["name"],
                options["payload"],
                idempotency_key=options["idempotency_key"],
                actor=options["actor"] or "signalrun",
            )
        except WorkflowEngineError as exc:
            raise CommandError(str(exc), returncode=2) from None
        if result.replayed:
            state = "already delivered (same idempotency key)"
        elif result.delivered:
            state = f"delivered: stage {result.stage_id} resumed"
        else:
            state = f"kept until stage {result.stage_id} waits for it"
        self.stdout.write(f"Signal {result.name!r} to run {result.run_id}: {state}")
