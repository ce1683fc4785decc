"""Offline mode (the example project without a provider key) and ``manage.py demo``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import override_settings
from documents.workflows import document_insights

from django_workflow_engine.models import AICall, WorkflowRun, WorkflowSignal
from django_workflow_engine.testing import active_mock, registered_workflows
from tickets.offline import offline_ai, start_offline_ai, stop_offline_ai
from tickets.samples import SAMPLE_TICKETS
from tickets.workflows import REVIEW_SIGNAL, ticket_intelligence

EXPECTED = {  # ticket -> (category, priority, suggested article, route, escalate)
    "T-1001": ("billing", "high", "KB-101", "Billing", False),
    "T-1002": ("technical", "urgent", "KB-204", "Product support", True),
    "T-1003": ("how_to", "low", "KB-310", "Customer success", False),
    "T-1004": ("cancellation", "high", "KB-415", "Retention", True),
}


@pytest.fixture
def offline() -> Iterator[None]:
    mock = offline_ai().start()
    yield
    mock.stop()


@pytest.mark.usefixtures("offline")
def test_offline_answers_fit_each_sample_ticket(fake_clock_runner, fake_clock):
    runs = [fake_clock_runner.start(ticket_intelligence, ticket) for ticket in SAMPLE_TICKETS]
    fake_clock_runner.drain()
    fake_clock.advance(seconds=60)
    fake_clock_runner.drain()
    for run in runs:
        run.refresh_from_db()
        if run.stages.filter(stage_id="review", status="SUSPENDED").exists():
            fake_clock_runner.signal(run, REVIEW_SIGNAL, {"approved": True})

    for run in runs:
        run.refresh_from_db()
        out = run.output
        got = (out["category"], out["priority"], out["suggested_article"]["id"], out["route_to"], out["escalate"])
        assert run.status == "COMPLETED", run.output
        assert got == EXPECTED[out["ticket_id"]], out["ticket_id"]
        assert out["ai_mode"] == "mock"
        assert out["summary"].startswith(run.input["customer"].split(" (")[0] + " reports: ")
        assert AICall.objects.for_run(run).count() == 8  # 3 direct, 1 embedding, the batch submission, 3 requests
        assert run.total_cost > 0
    t1002 = next(run for run in runs if run.output["ticket_id"] == "T-1002")
    assert t1002.output["entities"]["error_codes"] == ["E-4012"]
    assert t1002.output["scores"]["urgency"] >= 8


@pytest.mark.django_db(transaction=True)
def test_demo_runs_the_pipeline_offline_and_prints_costs_and_a_login(capsys):
    from tickets.management.commands.demo import Command

    assert active_mock() is None
    try:
        with (
            override_settings(TICKETS_AI_MODE="offline"),
            registered_workflows(ticket_intelligence, document_insights),
        ):
            call_command(Command(), "--tickets", "2", "--poll-seconds", "0.2", "--documents")
        assert active_mock() is not None  # the demo started the offline answers
    finally:
        stop_offline_ai()
    out = capsys.readouterr().out

    assert "OFFLINE MODE" in out
    assert "T-1001: COMPLETED" in out
    assert "T-1002: COMPLETED" in out
    assert "T-1003" not in out
    assert "score      SUSPENDED" in out
    assert "report     COMPLETED" in out
    assert "T-1002   review     SUSPENDED" in out  # escalated: waits for a person, and the demo answers
    assert "Answered the escalation reviews of T-1002 through engine.signal(run_id, 'escalation-review'" in out
    assert "T-1005 is escalated and left waiting for a person" in out
    waiting = WorkflowRun.objects.get(input__ticket_id="T-1005")
    assert waiting.status == "RUNNING"
    assert waiting.stages.get(stage_id="review").status == "SUSPENDED"
    assert f"http://127.0.0.1:8000/admin/django_workflow_engine/workflowrun/{waiting.id}/change/" in out
    answered = WorkflowRun.objects.get(input__ticket_id="T-1002")
    assert (answered.output["reviewed_by"], WorkflowSignal.objects.get(run=answered).actor) == ("person", "demo")
    assert "AI cost by model" in out
    assert "AI cost by stage" in out
    assert "text-embedding-3-small" in out
    assert "document-insights (no AI)" in out
    assert "schedules and delayed starts" in out
    assert "right after: its first stage is PENDING (not due yet)" in out
    assert "2 s later: COMPLETED" in out
    assert "schedule morning-digest: document-insights, cron '0 7 * * 1-5' (Europe/Berlin)" in out
    assert out.count("    next: ") == 3
    assert "Run now: " in out
    password = out.split("password: ")[1].split()[0]
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser
    assert admin.check_password(password)


def test_demo_refuses_a_bad_ticket_count():
    from django.core.management.base import CommandError

    from tickets.management.commands.demo import Command

    with pytest.raises(CommandError, match="--tickets must be between 1 and 4, not 9"):
        call_command(Command(), "--tickets", "9", "--no-admin-user")


def test_starting_offline_answers_is_idempotent():
    try:
        first = start_offline_ai()
        assert start_offline_ai() is first
        assert active_mock() is first
    finally:
        stop_offline_ai()
    assert active_mock() is None
