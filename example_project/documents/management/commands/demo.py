"""``manage.py demo``: start three document-insights runs, drive them in this process, show the results."""

from __future__ import annotations

import json
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from django_workflow_engine import engine
from documents.samples import SAMPLES

OUTCOME_STYLE = {"completed": "green", "failed": "red", "retrying": "yellow", "suspended": "cyan"}


class Command(BaseCommand):
    help = "Run the document-insights workflow on three sample documents and print what happens."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--top-n", type=int, default=3, help="keywords per document (default 3)")
        parser.add_argument("--no-admin-user", action="store_true", help="do not create/reset the 'admin' user")

    def handle(self, *args: Any, top_n: int, no_admin_user: bool, **options: Any) -> None:
        from rich.console import Console
        from rich.markup import escape

        console = Console(highlight=False)
        console.rule(escape("document-insights: ingest -> [keywords, stats] -> report"))

        runs = [engine.start("document-insights", doc, config={"keywords": {"top_n": top_n}}) for doc in SAMPLES]
        for run in runs:
            console.print(f"started run [bold]{short(run.id)}[/]  status={run.status}")

        console.print()

        def on_stage(event: Any) -> None:
            style = OUTCOME_STYLE.get(event.outcome, "white")
            line = f"  run {short(event.run_id)}  {event.stage_id:<10} [{style}]{event.outcome:<9}[/] {event.duration_ms:>5} ms"
            if event.error:
                line += f"  [red]{event.error}[/]"
            console.print(line)

        result = engine.run_until_idle(on_stage=on_stage)
        console.print(f"\n{result.jobs} stage executions: {result.completed} completed, {result.failed} failed")

        for run in runs:
            run.refresh_from_db()
            console.rule(f"run {short(run.id)}: {run.status}")
            console.print_json(json.dumps(run.output, ensure_ascii=False))

        console.rule("[bold]admin")
        console.print("Browse the runs, stages and logs in the admin:")
        console.print("  python example_project/manage.py runserver")
        console.print("  then open http://127.0.0.1:8000/admin/")
        if not no_admin_user:
            password = reset_admin_password()
            console.print(f"  login: [bold]admin[/]  password: [bold]{password}[/]  (a new one on every demo run)")

        # Not a pass/fail tool, but a demo that did not complete should not look like success to a script.
        if any(run.status != "COMPLETED" for run in runs):
            raise SystemExit(1)


def short(run_id: Any) -> str:
    # Run ids start with a timestamp; their tail tells runs started together apart.
    return str(run_id)[-8:]


def reset_admin_password() -> str:
    password = secrets.token_urlsafe(12)
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(username="admin", defaults={"email": "admin@example.com"})
    user.is_staff = user.is_superuser = user.is_active = True
    user.set_password(password)
    user.save()
    return password
