"""The AI pipeline tested the way a user would: the engine's pytest plugin fixtures, no provider, no network.

``mock_ai`` scripts the model replies (they still go through litellm, so every call is a priced ``AICall``),
``fake_clock_runner`` runs the workflow on the test database and lets the test move time to the scoring batch's
next poll instead of waiting for it, deliver the human review's signal (``runner.signal``) and step past its
timeout (``runner.advance``).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import override_settings

from django_workflow_engine.models import AICall
from tickets.samples import SAMPLE_TICKETS
from tickets.workflows import REVIEW_SIGNAL, ticket_intelligence

TICKET = SAMPLE_TICKETS[0]  # "Charged twice for the annual plan"
POLL = 60  # ScoreConfig.poll_seconds default

# litellm's mock usage is 10 prompt + 20 completion tokens per call, priced from its bundled map:
TEXT_OR_OBJECT = Decimal("0.0000135")  # gpt-4o-mini: 10 x $0.15/M + 20 x $0.60/M
EMBED = Decimal("0.0000002")  # text-embedding-3-small: 10 x $0.02/M
BATCH_ITEM = Decimal("0.00000675")  # gpt-4o-mini batch prices: half


def script_replies(mock_ai, *, churn_risk=3, category="billing"):
    mock_ai.text("Dana was charged twice for the Pro annual plan and wants the duplicate refunded.")
    mock_ai.object(
        {"category": category, "priority": "high", "sentiment": "negative", "confidence": 0.9}, contains="Classify"
    )
    mock_ai.object(
        {"products": ["Pro annual plan"], "references": ["INV-20931"], "error_codes": [], "amounts": ["$1,188"]},
        contains="Extract the entities",
    )
    mock_ai.object({"score": churn_risk, "reason": "Second duplicate charge."}, contains="for churn_risk")
    mock_ai.object({"score": 7, "reason": "Finance is waiting."}, contains="for urgency")
    mock_ai.object({"score": 2, "reason": "A refund in the billing tool."}, contains="for effort")
    # The ticket and the refunds article point one way, every other article another.
    mock_ai.embedding([1.0, 0.0], contains="refund")
    mock_ai.embedding([0.0, 1.0])


def finish(runner, clock, run):
    """The scoring batch suspends the run; move time to its first poll and drain again."""
    assert run.status == "RUNNING"
    assert run.stages.get(stage_id="score").status == "SUSPENDED"
    clock.advance(seconds=POLL)
    runner.drain()
    run.refresh_from_db()
    return run


def test_a_ticket_is_summarized_classified_scored_and_routed(mock_ai, fake_clock_runner, fake_clock):
    script_replies(mock_ai)

    run = finish(fake_clock_runner, fake_clock, fake_clock_runner(ticket_intelligence, TICKET))

    assert run.status == "COMPLETED"
    report = run.output
    assert report["summary"].startswith("Dana was charged twice")
    assert (report["category"], report["priority"], report["sentiment"]) == ("billing", "high", "negative")
    assert report["entities"]["references"] == ["INV-20931"]
    assert report["suggested_article"]["id"] == "KB-101"
    assert report["scores"] == {"urgency": 7, "churn_risk": 3, "effort": 2}
    assert (report["route_to"], report["escalate"], report["ai_mode"]) == ("Billing", False, "mock")


def test_every_call_is_recorded_and_priced_by_stage(mock_ai, fake_clock_runner, fake_clock):
    script_replies(mock_ai)

    run = finish(fake_clock_runner, fake_clock, fake_clock_runner(ticket_intelligence, TICKET))

    by_stage = {row["stage_name"]: (row["calls"], row["cost"]) for row in AICall.objects.for_run(run).by_stage()}
    assert by_stage == {
        "summarize": (1, TEXT_OR_OBJECT),
        "classify": (1, TEXT_OR_OBJECT),
        "extract": (1, TEXT_OR_OBJECT),
        "embed": (1, EMBED),
        "score": (4, 3 * BATCH_ITEM),  # the journaled (zero-cost) submission and the three requests
    }
    assert AICall.objects.for_run(run).filter(is_batch=True).count() == 3
    assert run.total_cost == 3 * TEXT_OR_OBJECT + EMBED + 3 * BATCH_ITEM
    # One embedding call for the ticket and the five articles; each prompt carried the ticket.
    assert len(mock_ai.calls_of("embedding")) == 6
    assert all("INV-20931" in call.prompt for call in mock_ai.calls_of("object"))


def test_high_churn_risk_escalates_and_waits_for_a_person_to_review_it(mock_ai, fake_clock_runner, fake_clock):
    script_replies(mock_ai, churn_risk=9)

    run = finish(fake_clock_runner, fake_clock, fake_clock_runner(ticket_intelligence, TICKET))

    assert run.status == "RUNNING"  # escalated: the review waits for a person
    review = run.stages.get(stage_id="review")
    assert review.status == "SUSPENDED"
    assert review.suspended_state["prepared"]["suggested route"] == "Billing + Retention"
    run = fake_clock_runner.signal(
        run, REVIEW_SIGNAL, {"approved": True, "route_to": "Billing", "note": "Refund first."}, actor="lead"
    )
    assert run.status == "COMPLETED"
    out = run.output
    assert (out["route_to"], out["escalate"], out["reviewed_by"]) == ("Billing", True, "person")
    assert out["review"]["note"] == "Refund first."


def test_a_declined_escalation_is_not_escalated(mock_ai, fake_clock_runner, fake_clock):
    script_replies(mock_ai, churn_risk=9)
    run = finish(fake_clock_runner, fake_clock, fake_clock_runner(ticket_intelligence, TICKET))

    run = fake_clock_runner.signal(run, REVIEW_SIGNAL, {"approved": False, "note": "A billing slip, not churn."})

    assert (run.output["route_to"], run.output["escalate"]) == ("Billing + Retention", False)


def test_an_unanswered_review_times_out_and_the_escalation_stands(mock_ai, fake_clock_runner, fake_clock):
    script_replies(mock_ai, churn_risk=9)
    run = finish(fake_clock_runner, fake_clock, fake_clock_runner(ticket_intelligence, TICKET))

    fake_clock_runner.advance(days=2, hours=23)
    run.refresh_from_db()
    assert run.status == "RUNNING"  # not before its timeout (three days)
    fake_clock_runner.advance(hours=1)
    run.refresh_from_db()

    assert run.status == "COMPLETED"
    assert (run.output["escalate"], run.output["reviewed_by"]) == (True, "nobody (timed out)")


def test_a_ticket_that_is_not_escalated_needs_no_review(mock_ai, fake_clock_runner, fake_clock):
    script_replies(mock_ai)

    run = finish(fake_clock_runner, fake_clock, fake_clock_runner(ticket_intelligence, TICKET))

    assert (run.status, run.output["reviewed_by"]) == ("COMPLETED", "not needed")
    assert not run.stages.filter(status="SUSPENDED").exists()


def test_the_run_waits_for_the_batch(mock_ai, fake_clock_runner, fake_clock):
    script_replies(mock_ai)
    mock_ai.batches(pending_polls=1)

    run = fake_clock_runner(ticket_intelligence, TICKET)
    run = finish(fake_clock_runner, fake_clock, run)  # first poll: still in progress
    assert run.status == "RUNNING"
    assert not AICall.objects.for_run(run).filter(is_batch=True).exists()

    fake_clock.advance(seconds=POLL)
    fake_clock_runner.drain()
    run.refresh_from_db()
    assert run.status == "COMPLETED"


def test_an_expired_batch_fails_the_run(mock_ai, fake_clock_runner, fake_clock):
    script_replies(mock_ai)
    mock_ai.batches(status="expired")

    run = finish(fake_clock_runner, fake_clock, fake_clock_runner(ticket_intelligence, TICKET))

    assert run.status == "FAILED"
    assert "ended expired" in run.output["error"]["message"]


@override_settings(WORKFLOW_ENGINE={"MAX_ATTEMPTS": 1})
def test_an_unknown_category_is_refused_by_the_enum(mock_ai, workflow_runner):
    script_replies(mock_ai, category="refunds")  # not a Category: invalid, then invalid again after the retry

    run = workflow_runner(ticket_intelligence, TICKET)

    assert run.status == "FAILED"
    classify = run.stages.get(stage_id="classify")
    assert "field 'category'" in classify.error_message
    assert AICall.objects.for_run(run).filter(stage=classify).count() == 2  # the corrective retry was made


def test_bad_input_is_refused_before_any_call(mock_ai, workflow_runner):
    from django_workflow_engine.errors import InvalidInput

    with pytest.raises(InvalidInput, match="field 'channel'"):
        workflow_runner(ticket_intelligence, {**TICKET, "channel": "fax"})
    assert mock_ai.calls == []
