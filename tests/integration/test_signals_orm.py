"""engine.signal on the ORM: the doorbell rings for the resumed run's next stage at once, and on PostgreSQL two
simultaneous signals for one waiting stage complete it exactly once."""

from __future__ import annotations

import io
import threading

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from django_workflow_engine import SignalNotExpected, engine
from django_workflow_engine.models import OutboxEvent, WorkflowJob, WorkflowRun, WorkflowSignal, WorkflowStage
from django_workflow_engine.testing import registered_workflows
from tests.conformance.test_signals import reviewed


@pytest.fixture
def flow():
    with registered_workflows(reviewed):
        yield reviewed


def _waiting() -> WorkflowRun:
    run = engine.start("reviewed", {"subject": "refund"})
    engine.run_until_idle()
    assert WorkflowStage.objects.get(run=run, stage_id="review").status == "SUSPENDED"
    return run


@pytest.mark.django_db
def test_a_signal_rings_the_doorbell_for_the_next_stage(
    flow, settings, monkeypatch, django_capture_on_commit_callbacks
):
    from django_workflow_engine.adapters import rq

    run = _waiting()
    settings.WORKFLOW_ENGINE = {"TRANSPORT": "rq"}
    rung: list[list[str]] = []
    monkeypatch.setattr(rq, "ring", lambda ids, **kwargs: rung.append(list(ids)))
    with django_capture_on_commit_callbacks(execute=True):
        result = engine.signal(run.id, "approval", {"approved": True, "note": "<script>alert(1)</script>"}, actor="bob")
    assert result.delivered
    job = WorkflowJob.objects.get(run=run, stage_id="finish")
    assert rung == [[job.id]]
    signal = WorkflowSignal.objects.get(run=run)
    assert (signal.actor, signal.consumed_by.stage_id, signal.payload["approved"]) == ("bob", "review", True)
    assert set(OutboxEvent.objects.filter(run_id=run.id).values_list("event_type", flat=True)) >= {
        "signal:received",
        "stage:resumed",
    }


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_signals_complete_the_waiting_stage_exactly_once(flow):
    run = _waiting()
    barrier = threading.Barrier(2)
    results: list[object] = []

    def deliver(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results.append(engine.signal(run.id, "approval", {"approved": bool(i), "note": f"answer {i}"}))
        except BaseException as exc:  # sorted below
            results.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert (len(won), len(lost)) == (1, 1), results
    assert isinstance(lost[0], SignalNotExpected)
    assert WorkflowSignal.objects.filter(run=run).count() == 1
    assert WorkflowJob.objects.filter(run=run, stage_id="finish").count() == 1
    engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert run.output["note"] == WorkflowSignal.objects.get(run=run).payload["note"]
    assert OutboxEvent.objects.filter(run_id=run.id, event_type="stage:resumed").count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_signals_wake_a_waiting_async_batch_stage_exactly_once():
    from tests.conformance.test_signals_batch import declared

    with registered_workflows(declared):
        run = engine.start("render-declared", {"name": "Doc"})
        engine.run_until_idle()
        barrier = threading.Barrier(2)
        results: list[object] = []

        def deliver(i: int) -> None:
            try:
                barrier.wait(timeout=10)
                results.append(engine.signal(run.id, "rendered", {"url": f"https://cdn/{i}"}))
            except BaseException as exc:  # sorted below
                results.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=deliver, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        won = [r for r in results if not isinstance(r, BaseException)]
        lost = [r for r in results if isinstance(r, BaseException)]
        assert (len(won), len(lost)) == (1, 1), results
        assert isinstance(lost[0], SignalNotExpected)
        assert "already received its signal" in str(lost[0])
        assert WorkflowJob.objects.get(run=run, stage_id="render").status == "PENDING"
        engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert run.output["url"] == WorkflowSignal.objects.get(run=run).payload["url"].upper()
    assert OutboxEvent.objects.filter(run_id=run.id, event_type="stage:resumed").count() == 1
    assert OutboxEvent.objects.filter(run_id=run.id, event_type="workflow:completed").count() == 1


def _signalrun(*args: str) -> str:
    out = io.StringIO()
    call_command("signalrun", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_signalrun_delivers_and_reports_errors_with_exit_status_2(flow):
    run = _waiting()
    with pytest.raises(CommandError, match="field 'approved'") as caught:
        _signalrun(run.id, "approval", "--payload", '{"note": "no decision"}')
    assert caught.value.returncode == 2
    with pytest.raises(CommandError, match="no stage of workflow 'reviewed' waits for it"):
        _signalrun(run.id, "payment", "--payload", "{}")
    assert not WorkflowSignal.objects.exists()

    out = _signalrun(run.id, "approval", "--payload", '{"approved": true}', "--idempotency-key", "k1")
    assert out.strip() == f"Signal 'approval' to run {run.id}: delivered: stage review resumed"
    again = _signalrun(run.id, "approval", "--payload", '{"approved": false}', "--idempotency-key", "k1")
    assert "already delivered" in again
    assert WorkflowSignal.objects.get(run=run).actor == "signalrun"
    engine.run_until_idle()
    run.refresh_from_db()
    assert (run.status, run.output["approved"]) == ("COMPLETED", True)


@pytest.mark.django_db
def test_the_plugin_runner_delivers_signals_and_steps_past_timeouts(fake_clock_runner, workflow_runner):
    from tests.conformance.test_signals import defaulted, timed

    answered = fake_clock_runner.signal(fake_clock_runner(reviewed, {"subject": "a"}), "approval", {"approved": True})
    assert (answered.status, answered.output["approved"]) == ("COMPLETED", True)
    failing = fake_clock_runner(timed, {"subject": "b"})
    defaulting = fake_clock_runner(defaulted, {"subject": "c"})
    fake_clock_runner.advance(seconds=599)
    assert WorkflowRun.objects.get(pk=defaulting.pk).status == "RUNNING"
    fake_clock_runner.advance(seconds=1)
    defaulting.refresh_from_db()
    assert (defaulting.status, defaulting.output["note"]) == ("COMPLETED", "nobody answered")
    fake_clock_runner.advance(hours=1)
    failing.refresh_from_db()
    assert failing.status == "FAILED"
    assert "timed out waiting for signal 'approval'" in failing.stages.get(stage_id="review").error_message
    with pytest.raises(TypeError, match="needs an engine with a FakeClock"):
        workflow_runner.advance(seconds=1)


@pytest.mark.django_db
def test_the_workflow_event_django_signal_carries_signal_received_and_stage_resumed(flow):
    from django_workflow_engine.signals import workflow_event
    from tests.conformance.test_signals_batch import declared

    received: list[dict] = []

    def receiver(sender, event, **kwargs):
        if sender in ("signal:received", "stage:resumed"):
            received.append(event)

    workflow_event.connect(receiver)
    try:
        run = _waiting()
        engine.signal(run.id, "approval", {"approved": True}, actor="alice")
        with registered_workflows(declared):
            batch = engine.start("render-declared", {"name": "Doc"})
            engine.run_until_idle()
            engine.signal(batch.id, "rendered", {"url": "u"}, actor="renderer")
            engine.run_until_idle()  # runs the woken stage and flushes the outbox to the Django signal
    finally:
        workflow_event.disconnect(receiver)
    got = [(e["type"], e["workflow_run_id"], e.get("signal"), e.get("stage_id"), e.get("actor")) for e in received]
    assert got == [
        ("signal:received", run.id, "approval", "review", "alice"),
        ("stage:resumed", run.id, "approval", "review", None),
        ("signal:received", batch.id, "rendered", "render", "renderer"),
        ("stage:resumed", batch.id, "rendered", "render", None),
    ]
    assert WorkflowRun.objects.get(pk=batch.pk).status == "COMPLETED"
