from __future__ import annotations

import argparse
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError


def _json_object(value: str) -> dict[str, Any]:
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc.msg} at position {exc.pos}") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return data


class Command(BaseCommand):
    help = "Start a workflow run; with --wait, show each stage's progress and the final output."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("workflow_id")
        parser.add_argument("--input", type=_json_object, default={}, help="workflow input as a JSON object")
        parser.add_argument("--config", type=_json_object, default=None, help="per-stage config as a JSON object")
        parser.add_argument("--priority", type=int, default=5)
        parser.add_argument("--idempotency-key", default=None)
        parser.add_argument("--metadata", type=_json_object, default=None, help="run metadata as a JSON object")
        parser.add_argument("--max-cost", default=None, help="AI spend budget for the run, e.g. 0.50")
        parser.add_argument("--wait", action="store_true", help="wait for the run to finish (workers do the work)")
        parser.add_argument("--inline", action="store_true", help="execute the run in this process (no worker needed)")
        parser.add_argument("--timeout", type=float, default=3600)

    def handle(self, *args: Any, **options: Any) -> None:
        from django_workflow_engine import engine
        from django_workflow_engine.errors import WorkflowEngineError
        from django_workflow_engine.models import Status

        try:
            run = engine.start(
                options["workflow_id"],
                options["input"],
                config=options["config"],
                priority=options["priority"],
                idempotency_key=options["idempotency_key"],
                metadata=options["metadata"],
                max_cost=options["max_cost"],
            )
        except WorkflowEngineError as exc:
            # Exit status 2, like a usage error: the arguments were wrong, not the run.
            raise CommandError(str(exc), returncode=2) from None
        self.stdout.write(f"Started run {run.id} of {run.workflow_id}")
        if options["inline"]:
            engine.run_until_idle()
        if options["wait"] or options["inline"]:
            run = self._wait(run.id, options["timeout"])
            self.stdout.write(f"Run {run.id} {run.status}")
            self.stdout.write(json.dumps(run.output, indent=2, sort_keys=True))
            if run.status != Status.COMPLETED:
                raise CommandError(f"run {run.id} finished {run.status}")

    def _wait(self, run_id: str, timeout: float) -> Any:
        from django_workflow_engine import engine
        from django_workflow_engine.models import Status
        from django_workflow_engine.registry import registry

        shown: dict[str, str] = {}
        total: int | None = None

        def show(run: Any) -> None:
            nonlocal total
            if total is None:
                workflow = registry.get(run.workflow_id)
                total = len(workflow.stage_ids()) if workflow else 0
            for stage in run.stages.order_by("execution_group", "stage_number"):
                if shown.get(stage.stage_id) != stage.status:
                    shown[stage.stage_id] = stage.status
                    done = sum(1 for s in shown.values() if s == Status.COMPLETED)
                    bar = "#" * done + "." * max(0, total - done)
                    self.stdout.write(f"[{bar}] {done}/{total}  {stage.stage_id}: {stage.status}")

        try:
            return engine.wait(run_id, timeout=timeout, poll_interval=0.25, on_poll=show)
        except TimeoutError as exc:
            raise CommandError(str(exc)) from None
