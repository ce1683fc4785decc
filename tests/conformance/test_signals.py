"""Signals on both adapters (the in-memory harness and the ORM through the engine's kernel)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from django_workflow_engine.errors import InvalidArgument, InvalidInput, InvalidRunState, RunNotFound
from django_workflow_engine.kernel import CancelRun, DeliverSignal
from tests.flows_signals import escalation, escalation_quick, escalation_strict

FLOWS = [escalation, escalation_quick, escalation_strict]


pytestmark = pytest.mark.django_db


@pytest.fixture
def h(make_kernel):
    return make_kernel(FLOWS)


def _signal(h, run_id, payload, **kw):
    return h.dispatch(DeliverSignal(run_id=run_id, name=kw.pop("name", "review"), payload=payload, **kw))


def _run(h, run_id):
    return h.persistence.get_run(run_id)


def test_a_run_waits_for_the_signal_and_resumes_in_the_delivering_transaction(h):
    run_id = h.start("escalation", {"subject": "Refund!"})
    h.run_until_idle()
    stage = h.persistence.get_stage(run_id, "review")
    assert stage.status == "SUSPENDED"
    assert stage.suspended_state["prepared"] == {"summary": "Ticket 'Refund!' needs a decision"}

    result = _signal(h, run_id, {"decision": "approve", "note": "ok"}, actor="alice")
    assert (result.stage_id, result.duplicate) == ("review", False)
    assert h.persistence.get_stage(run_id, "review").status == "COMPLETED"
    # the next stage was enqueued in that same transaction: nothing waits for a maintenance tick
    assert [j.stage_id for j in h.jobs.jobs_for_run(run_id) if j.status == "PENDING"] == ["close"]
    h.drain()
    assert _run(h, run_id).status == "COMPLETED"
    assert _run(h, run_id).output == {"closed": True, "note": "ok"}
    types = [e.event_type if hasattr(e, "event_type") else e["type"] for e in h.persistence.get_events(run_id)]
    assert "signal:received" in types
    assert "stage:resumed" in types


def test_a_signal_before_the_wait_is_kept_and_consumed_when_the_stage_gets_there(h):
    run_id = h.create("escalation", {"subject": "Early"})  # PENDING: not started yet
    _signal(h, run_id, {"decision": "reject", "note": "spam"})
    h.run_until_idle()
    assert _run(h, run_id).status == "COMPLETED"
    assert _run(h, run_id).output == {"closed": False, "note": "spam"}


def test_a_duplicate_idempotency_key_is_a_no_op_returning_the_first_result(h):
    run_id = h.start("escalation", {"subject": "Twice"})
    h.run_until_idle()
    first = _signal(h, run_id, {"decision": "approve"}, idempotency_key="webhook-1")
    again = _signal(h, run_id, {"decision": "reject"}, idempotency_key="webhook-1")
    assert again.signal_id == first.signal_id
    assert again.duplicate
    h.run_until_idle()
    assert _run(h, run_id).output["closed"] is True


def test_a_second_answer_to_an_answered_stage_is_refused(h):
    run_id = h.start("escalation", {"subject": "Race"})
    h.run_until_idle()
    _signal(h, run_id, {"decision": "approve"})
    with pytest.raises(InvalidRunState, match="answered"):
        _signal(h, run_id, {"decision": "reject"})


def test_bad_signals_are_refused_and_nothing_is_written(h):
    run_id = h.start("escalation", {"subject": "Bad"})
    h.run_until_idle()
    with pytest.raises(InvalidInput, match="field 'decision'"):
        _signal(h, run_id, {"decision": "maybe"})
    with pytest.raises(InvalidArgument, match="no stage of workflow 'escalation' waits for signal 'approval'"):
        _signal(h, run_id, {"decision": "approve"}, name="approval")
    with pytest.raises(RunNotFound):
        _signal(h, "nope", {"decision": "approve"})
    assert h.persistence.get_stage(run_id, "review").status == "SUSPENDED"
    assert not h.persistence.take_signal(run_id, "review", "x", h.clock.now())
    h.dispatch(CancelRun(run_id))
    with pytest.raises(InvalidRunState, match="it is CANCELLED"):
        _signal(h, run_id, {"decision": "approve"})


def test_timeouts_fail_or_give_the_default(h):
    strict = h.start("escalation-strict", {"subject": "Strict"})
    quick = h.start("escalation-quick", {"subject": "Quick"})
    h.run_until_idle()
    h.clock.advance(timedelta(seconds=61))
    h.run_until_idle()
    assert _run(h, quick).status == "COMPLETED"
    assert _run(h, quick).output == {"closed": True, "note": "no answer"}
    assert _run(h, strict).status == "FAILED"
    assert "No signal 'review' arrived within 60 s" in _run(h, strict).output["error"]["message"]
