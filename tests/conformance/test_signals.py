"""Signal stages (human in the loop): a run waits for a named signal and resumes with its payload (memory and ORM
kernels, fake clock)."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel

from django_workflow_engine import (
    InvalidInput,
    InvalidRunState,
    RunNotFound,
    SignalNotExpected,
    Suspend,
    WorkflowBuilder,
    define_async_batch_stage,
    define_signal_stage,
    define_stage,
)
from django_workflow_engine.core.errors import InvalidArgument, WorkflowDefinitionError

pytestmark = pytest.mark.django_db


class Ticket(BaseModel):
    subject: str


class Approval(BaseModel):
    approved: bool
    note: str = ""
    severity: Literal["low", "high"] = "low"


class Outcome(BaseModel):
    subject: str
    approved: bool
    note: str


@define_stage(id="triage", name="Triage", input=Ticket, output=Ticket)
def triage(ctx):
    return Ticket(subject=ctx.input.subject.upper())


def _prepare(ctx):
    return {"show": f"Please review {ctx.input.subject}"}


review = define_signal_stage(
    id="review", name="Human review", signal="approval", input=Ticket, output=Approval, prepare=_prepare
)
timed_review = define_signal_stage(
    id="review", name="Timed review", signal="approval", input=Ticket, output=Approval, timeout=3600
)
default_review = define_signal_stage(
    id="review",
    name="Default review",
    signal="approval",
    input=Ticket,
    output=Approval,
    timeout=600,
    on_timeout=Approval(approved=False, note="nobody answered"),
)


@define_stage(id="finish", name="Finish", input=Approval, output=Outcome)
def finish(ctx):
    ticket = ctx.workflow_context["triage"]
    return Outcome(subject=ticket["subject"], approved=ctx.input.approved, note=ctx.input.note)


def _flow(wid, stage):
    return WorkflowBuilder(wid, wid, input=Ticket, output=Outcome).pipe(triage).pipe(stage).pipe(finish).build()


reviewed = _flow("reviewed", review)
timed = _flow("timed", timed_review)
defaulted = _flow("defaulted", default_review)


@pytest.fixture
def h(make_kernel):
    return make_kernel([reviewed, timed, defaulted])


def _waiting(h, wid="reviewed"):
    run_id = h.start(wid, {"subject": "refund"})
    h.drain()
    return run_id


def test_a_run_waits_then_resumes_with_the_payload_at_once(h):
    run_id = _waiting(h)
    stage = h.stages(run_id)["review"]
    assert (h.run(run_id).status, stage.status) == ("RUNNING", "SUSPENDED")
    assert stage.suspended_state == {"waiting_for_signal": "approval", "prepared": {"show": "Please review REFUND"}}
    assert h.poll().checked == 0  # nothing to poll while it waits

    result = h.signal(run_id, "approval", {"approved": True, "note": "ok"}, actor="alice")

    assert (result.delivered, result.replayed, result.stage_id) == (True, False, "review")
    assert h.stages(run_id)["review"].status == "COMPLETED"
    # the next stage's job is already queued by the signal's transaction (no maintenance tick needed)
    assert [j.stage_id for j in h.jobs.jobs_for_run(run_id) if j.status == "PENDING"] == ["finish"]
    h.drain()
    run = h.run(run_id)
    assert run.status == "COMPLETED"
    assert run.output == {"subject": "REFUND", "approved": True, "note": "ok"}
    types = h.event_types(run_id)
    assert types.index("signal:received") < types.index("stage:resumed") < types.index("workflow:completed")
    (signal,) = h.persistence.get_signals(run_id)
    assert (signal.actor, signal.consumed_by) == ("alice", h.stages(run_id)["review"].id)


def test_a_signal_before_the_wait_is_kept_and_consumed_when_the_stage_waits(h):
    run_id = h.start("reviewed", {"subject": "early"})
    result = h.signal(run_id, "approval", {"approved": False, "note": "no"})
    assert result.delivered is False
    assert h.persistence.next_signal(run_id, "approval") is not None
    h.drain()
    assert h.run(run_id).status == "COMPLETED"
    assert h.run(run_id).output["note"] == "no"
    assert h.persistence.next_signal(run_id, "approval") is None


def test_a_duplicate_idempotency_key_is_a_no_op_returning_the_first_result(h):
    run_id = _waiting(h)
    first = h.signal(run_id, "approval", {"approved": True}, idempotency_key="mail-1")
    events = h.event_count()
    again = h.signal(run_id, "approval", {"approved": False}, idempotency_key="mail-1")
    assert (again.signal_id, again.delivered, again.replayed) == (first.signal_id, True, True)
    assert h.event_count() == events
    assert len(h.persistence.get_signals(run_id)) == 1
    h.drain()
    assert h.run(run_id).output["approved"] is True


def test_a_second_signal_for_an_answered_stage_is_refused(h):
    run_id = _waiting(h)
    h.signal(run_id, "approval", {"approved": True})
    with pytest.raises(SignalNotExpected, match="already received"):
        h.signal(run_id, "approval", {"approved": False})
    assert len(h.persistence.get_signals(run_id)) == 1


def test_a_wrong_payload_names_the_field_and_writes_nothing(h):
    run_id = _waiting(h)
    events = h.event_count()
    with pytest.raises(InvalidInput, match=r"signal 'approval' of stage 'review'.*field 'severity'"):
        h.signal(run_id, "approval", {"approved": True, "severity": "urgent"})
    with pytest.raises(InvalidInput, match="field 'approved'"):
        h.signal(run_id, "approval", {"note": "missing the decision"})
    assert h.persistence.get_signals(run_id) == []
    assert h.event_count() == events
    assert h.stages(run_id)["review"].status == "SUSPENDED"


def test_unknown_run_unknown_name_and_bad_arguments_are_clear_errors(h):
    run_id = _waiting(h)
    with pytest.raises(RunNotFound):
        h.signal("no-such-run", "approval", {"approved": True})
    with pytest.raises(SignalNotExpected, match=r"no stage of workflow 'reviewed' waits for it.*'approval'"):
        h.signal(run_id, "payment", {"approved": True})
    with pytest.raises(InvalidArgument, match="actor"):
        h.signal(run_id, "approval", {"approved": True}, actor="x" * 201)
    with pytest.raises(InvalidArgument, match="name"):
        h.signal(run_id, "bad name!", {"approved": True})
    assert h.persistence.get_signals(run_id) == []


def test_a_signal_to_a_cancelled_or_finished_run_is_refused(h):
    run_id = _waiting(h)
    assert h.cancel(run_id)
    with pytest.raises(InvalidRunState, match="it is CANCELLED"):
        h.signal(run_id, "approval", {"approved": True})
    done = _waiting(h)
    h.signal(done, "approval", {"approved": True})
    h.drain()
    with pytest.raises(InvalidRunState, match="it is COMPLETED"):
        h.signal(done, "approval", {"approved": True}, idempotency_key="late")
    assert h.persistence.get_signals(run_id) == []


def test_a_timeout_fails_the_run(h):
    run_id = _waiting(h, "timed")
    h.clock.advance(seconds=3599)
    assert h.poll().checked == 0
    h.clock.advance(seconds=2)
    h.run_until_idle()
    run = h.run(run_id)
    assert run.status == "FAILED"
    assert "timed out waiting for signal 'approval'" in h.stages(run_id)["review"].error_message
    with pytest.raises(InvalidRunState):
        h.signal(run_id, "approval", {"approved": True})


def test_a_timeout_completes_with_the_default_output(h):
    run_id = _waiting(h, "defaulted")
    h.clock.advance(seconds=601)
    h.run_until_idle()
    assert h.run(run_id).status == "COMPLETED"
    assert h.run(run_id).output == {"subject": "REFUND", "approved": False, "note": "nobody answered"}


def test_a_signal_before_the_timeout_wins_over_it(h):
    run_id = _waiting(h, "defaulted")
    h.clock.advance(seconds=300)
    h.signal(run_id, "approval", {"approved": True, "note": "in time"})
    h.clock.advance(seconds=600)
    h.run_until_idle()
    assert h.run(run_id).output["note"] == "in time"


def _ask_only_about_refunds(ctx):
    from django_workflow_engine import Ready

    if "REFUND" not in ctx.input.subject:
        return Ready(output=Approval(approved=True, note="nothing to review"))
    return {"show": ctx.input.subject}


conditional = _flow(
    "conditional",
    define_signal_stage(
        id="review", name="Review", signal="approval", input=Ticket, output=Approval, prepare=_ask_only_about_refunds
    ),
)


def test_prepare_returning_ready_completes_the_stage_without_waiting(make_kernel):
    h = make_kernel([conditional])
    skipped = h.start("conditional", {"subject": "login"})
    asked = h.start("conditional", {"subject": "refund"})
    h.drain()
    assert h.run(skipped).status == "COMPLETED"
    assert h.run(skipped).output == {"subject": "LOGIN", "approved": True, "note": "nothing to review"}
    assert "stage:suspended" not in h.event_types(skipped)
    assert h.stages(asked)["review"].status == "SUSPENDED"
    with pytest.raises(InvalidRunState, match="it is COMPLETED"):
        h.signal(skipped, "approval", {"approved": False})


def test_definition_errors_name_the_stage():
    with pytest.raises(WorkflowDefinitionError, match="'s'.*on_timeout is not a valid Approval"):
        define_signal_stage(id="s", name="S", signal="a", output=Approval, on_timeout={"note": 1})
    with pytest.raises(WorkflowDefinitionError, match="'s'.*signal name"):
        define_signal_stage(id="s", name="S", signal="", output=Approval)
    with pytest.raises(WorkflowDefinitionError, match="'s'.*timeout must be positive"):
        define_signal_stage(id="s", name="S", signal="a", output=Approval, timeout=0)


def _check_signal(state, ctx):
    from django_workflow_engine import NotReady, Ready

    if "signal" in state:
        return Ready(output={"subject": state["job"], "approved": state["signal"]["ok"], "note": "by signal"})
    return NotReady()


@define_async_batch_stage(id="render", name="Render", check_completion=_check_signal, output=Outcome)
def render(ctx):
    return Suspend(state={"job": "r-1"}, poll_interval=3600, wait_for_signal="rendered")


batch_flow = WorkflowBuilder("batch-signal", "Batch signal", input=Ticket, output=Outcome).pipe(render).build()


def test_an_async_batch_stage_waiting_for_a_signal_is_polled_at_once_with_its_payload(make_kernel):
    h = make_kernel([batch_flow])
    run_id = h.start("batch-signal", {"subject": "x"})
    h.drain()
    assert h.poll().checked == 0  # its next poll is an hour away
    result = h.signal(run_id, "rendered", {"ok": True})
    assert (result.delivered, result.stage_id) == (True, "render")
    h.drain()  # its job is back in the queue: polled at once, check_completion sees the payload
    assert h.run(run_id).status == "COMPLETED"
    assert h.run(run_id).output == {"subject": "r-1", "approved": True, "note": "by signal"}
    with pytest.raises(SignalNotExpected):
        h.signal(run_id, "rendered", {"ok": False})
