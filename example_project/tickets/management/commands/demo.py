"""``manage.py demo``: run the ticket-intelligence AI pipeline on sample tickets, in this process, and show it.

Starts one run per sample ticket, drives them with ``engine.run_until_idle()`` (waiting for the scoring batch
between polls), answers the human review of each escalated ticket itself through ``engine.signal`` (as a view or a
webhook would), shows per-stage progress as it happens, then prints each run's output, the AI cost by model and
by stage, and how to open the admin with a freshly generated login. One more escalated ticket is left waiting for
a person: the demo prints the admin link of its run, whose page has the review form.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse
from django.utils import timezone

from django_workflow_engine import engine
from django_workflow_engine.ai.costs import display
from django_workflow_engine.models import WorkflowStage
from tickets.costs_table import cost_tables
from tickets.offline import start_offline_ai
from tickets.progress import StageProgress
from tickets.samples import SAMPLE_TICKETS, WAITING_TICKET
from tickets.workflows import REVIEW_SIGNAL, ticket_intelligence

# What the demo answers, on behalf of a reviewer, to the review of each escalated sample ticket.
DEMO_ANSWER = {"approved": True, "note": "Approved by the demo, on behalf of a reviewer."}


def positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = "Run the ticket-intelligence AI pipeline on sample support tickets and print what happens."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--tickets",
            type=int,
            default=len(SAMPLE_TICKETS),
            help=f"how many sample tickets (1-{len(SAMPLE_TICKETS)})",
        )
        parser.add_argument(
            "--poll-seconds",
            type=positive_float,
            default=None,
            help="how often the score stage polls its batch (default: 1 offline, 30 with a provider)",
        )
        parser.add_argument(
            "--timeout",
            type=positive_float,
            default=None,
            help="give up waiting after this many seconds; runs keep going under runmaintenance (default: 60 offline, 1800 live)",
        )
        parser.add_argument("--documents", action="store_true", help="also run the non-AI document-insights demo")
        parser.add_argument("--no-admin-user", action="store_true", help="do not create/reset the 'admin' user")

    def handle(self, *args: Any, **options: Any) -> None:
        from rich.console import Console
        from rich.markup import escape

        count = options["tickets"]
        if not 1 <= count <= len(SAMPLE_TICKETS):
            raise CommandError(f"--tickets must be between 1 and {len(SAMPLE_TICKETS)}, not {count}.")
        offline = getattr(settings, "TICKETS_AI_MODE", "live") == "offline"
        poll = options["poll_seconds"] or (1.0 if offline else 30.0)
        timeout = options["timeout"] or (60.0 if offline else 1800.0)
        console = Console(highlight=False)
        started_at = time.monotonic()

        console.rule("ticket-intelligence")
        console.print(
            escape(
                "ingest -> [summarize, classify, extract] -> embed -> score (provider batch) -> report "
                "-> review (a person, escalations only) -> close"
            )
        )
        if offline:
            start_offline_ai()  # already started by the app's ready() under manage.py; idempotent
            console.print(
                "[bold yellow]OFFLINE MODE[/]: no OPENAI_API_KEY in the environment, so every AI call is answered "
                "by deterministic mock responses (tickets/offline.py, through litellm's mock_response) and nothing "
                "leaves this machine. Calls are still recorded and priced as gpt-4o-mini / text-embedding-3-small "
                "would be. Set OPENAI_API_KEY to call OpenAI for real."
            )
        else:
            console.print(
                "[bold green]LIVE MODE[/]: OPENAI_API_KEY is set, so the stages call OpenAI through litellm and you "
                "pay for it (a few cents at most). The scoring batch can take minutes; the demo waits up to "
                f"{timeout:.0f} s."
            )

        tickets = SAMPLE_TICKETS[:count]
        config = {"score": {"poll_seconds": poll}}
        runs = [engine.start(ticket_intelligence.id, ticket, config=config) for ticket in tickets]
        waiting = engine.start(ticket_intelligence.id, WAITING_TICKET, config=config)
        labels = {run.id: ticket["ticket_id"] for run, ticket in zip(runs, tickets, strict=True)}
        labels[waiting.id] = WAITING_TICKET["ticket_id"]
        started = [*runs, waiting]
        console.print(f"Started {len(started)} runs: " + ", ".join(f"{labels[r.id]}={r.id}" for r in started) + "\n")

        answered: list[str] = []
        with StageProgress(console, started, labels, ticket_intelligence.stage_ids(), ask="review") as progress:

            def answer(run_id: str) -> None:
                if run_id != waiting.id:  # the demo plays the reviewer, but leaves one run for you
                    engine.signal(run_id, REVIEW_SIGNAL, DEMO_ANSWER, actor="demo")
                    answered.append(labels[run_id])

            timed_out = not drive(progress, poll, deadline=time.monotonic() + timeout, answer=answer)
        runs_took = time.monotonic() - started_at
        if answered:
            console.print(
                f"\nAnswered the escalation reviews of {', '.join(sorted(answered))} through "
                f"engine.signal(run_id, {REVIEW_SIGNAL!r}, {DEMO_ANSWER}, actor='demo'), as a view or a webhook "
                "would; a person answers with the form on the run's admin page.",
                soft_wrap=True,
            )

        for run in runs:
            run.refresh_from_db()
            console.rule(
                f"{labels[run.id]}: {run.status}  (AI cost {display(run.total_cost)} USD, {run.total_tokens} tokens)"
            )
            console.print_json(json.dumps(run.output, ensure_ascii=False))

        console.print()
        for table in cost_tables(runs):
            console.print(table)

        if options["documents"]:
            self.document_insights(console)
        self.schedules(console)

        console.rule("admin")
        console.print("Browse the runs, stages, logs and AI calls (with the costs page) in the admin:")
        console.print("  python example_project/manage.py runserver")
        console.print("  then open http://127.0.0.1:8000/admin/")
        if not options["no_admin_user"]:
            password = reset_admin_password()
            console.print(f"  login: [bold]admin[/]  password: [bold]{password}[/]  (a new one on every demo run)")
        waiting.refresh_from_db()
        if waiting.stages.filter(stage_id="review", status="SUSPENDED").exists():
            path = reverse("admin:django_workflow_engine_workflowrun_change", args=[waiting.id])
            console.print(
                f"\n{labels[waiting.id]} is escalated and left waiting for a person to review it. Answer the form on "
                "its run page (after runserver, logged in as admin):",
                soft_wrap=True,
            )
            console.print(f"  http://127.0.0.1:8000{path}", soft_wrap=True)
            console.print(
                "  or from a shell: python example_project/manage.py signalrun "
                f"{waiting.id} {REVIEW_SIGNAL} --payload '{{\"approved\": true}}'",
                soft_wrap=True,
            )
        console.print(f"\nThe runs took {runs_took:.1f} s.")

        if timed_out:
            console.print(
                f"[yellow]Stopped waiting after {timeout:.0f} s; the unfinished runs carry on under "
                "`python example_project/manage.py runmaintenance`.[/]"
            )
        # Not a pass/fail tool, but a demo that did not complete should not look like success to a script.
        if any(run.status != "COMPLETED" for run in runs):
            raise SystemExit(1)

    def schedules(self, console: Any) -> None:
        show_schedules(console)

    def document_insights(self, console: Any) -> None:
        from documents.samples import SAMPLES
        from rich.markup import escape

        console.rule(escape("document-insights (no AI): ingest -> [keywords, stats] -> report"))
        runs = [engine.start("document-insights", doc) for doc in SAMPLES]
        engine.run_until_idle()
        for run in runs:
            run.refresh_from_db()
            console.print(f"  {run.status:<9} {run.output.get('summary', run.output)}")


def _clock(value: Any, zone: str | None = None) -> str:
    from zoneinfo import ZoneInfo

    local = value.astimezone(ZoneInfo(zone)) if zone else timezone.localtime(value)
    return f"{local:%a %Y-%m-%d %H:%M:%S %Z}"


def show_schedules(console: Any) -> None:
    """A delayed start (due in 2 s) and the code-declared schedule of document-insights, with "Run now"."""
    from datetime import timedelta

    from documents.samples import SAMPLES

    from django_workflow_engine.hosts.maintenance import run_maintenance_tick
    from django_workflow_engine.models import WorkflowRun, WorkflowSchedule

    console.rule("schedules and delayed starts")
    delayed = engine.start("document-insights", SAMPLES[0], delay=timedelta(seconds=2))
    delayed.refresh_from_db()
    console.print(
        f"  delayed start {delayed.id}: {delayed.status}, scheduled for {_clock(delayed.scheduled_at)}", soft_wrap=True
    )
    engine.run_until_idle()
    first = WorkflowStage.objects.get(run_id=delayed.id, stage_id="ingest")
    console.print(f"  right after: its first stage is {first.status} (not due yet)")
    time.sleep(max(0.0, (delayed.scheduled_at - timezone.now()).total_seconds()) + 0.05)
    engine.run_until_idle()
    delayed.refresh_from_db()
    console.print(f"  2 s later: {delayed.status}")

    run_maintenance_tick()  # syncs the schedules declared in code to rows and fires those due
    schedule = WorkflowSchedule.objects.get(name="morning-digest")
    console.print(
        f"  schedule {schedule.name}: {schedule.workflow_id}, {schedule.every}, catch-up {schedule.catchup}",
        soft_wrap=True,
    )
    for when in schedule.preview(timezone.now(), 3):
        console.print(f"    next: {_clock(when, schedule.timezone)}")
    manual = engine.run_schedule_now(schedule.name)
    engine.run_until_idle()
    status = WorkflowRun.objects.get(pk=manual.id).status
    console.print(f"  Run now: {manual.id} {status} (metadata {manual.metadata})", soft_wrap=True)


def drive(progress: StageProgress, poll: float, *, deadline: float, answer: Any = None) -> bool:
    """Run everything runnable, then sleep until the next suspended stage's poll is due, until every run is
    finished or waiting for a person. ``answer(run_id)`` is called once for each run that comes to wait for one.

    Returns ``False`` if ``deadline`` (a ``time.monotonic()`` value) passed first.
    """
    asked: set[str] = set()
    while True:
        engine.run_until_idle(on_stage=progress.refresh)
        progress.refresh()
        new = [run_id for run_id in progress.asking if run_id not in asked]
        if new and answer is not None:
            for run_id in new:
                asked.add(run_id)
                answer(run_id)
            continue  # a signal queues the next stage: run it now
        if progress.settled:
            return True
        if time.monotonic() >= deadline:
            return False
        due = (
            WorkflowStage.objects.filter(run_id__in=progress.run_ids, status="SUSPENDED", next_poll_at__isnull=False)
            .order_by("next_poll_at")
            .values_list("next_poll_at", flat=True)
            .first()
        )
        wait = (due - timezone.now()).total_seconds() if due else poll
        time.sleep(min(max(wait, 0.05), poll, max(deadline - time.monotonic(), 0)))


def reset_admin_password() -> str:
    """Create or update the superuser ``admin`` with a new random password, and return it."""
    password = secrets.token_urlsafe(12)
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(username="admin", defaults={"email": "admin@example.com"})
    user.is_staff = user.is_superuser = user.is_active = True
    user.set_password(password)
    user.save()
    return password
