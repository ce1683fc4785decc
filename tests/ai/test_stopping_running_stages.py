"""Cancellation and deadlines reach code that is running: the AI helper refuses new calls for a run that
stopped, ``ctx.cancelled`` / ``ctx.check_cancelled()`` let a stage stop itself, and a run deadline interrupts
the stage that runs at that moment."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel

from django_workflow_engine import WorkflowBuilder, define_stage, engine
from django_workflow_engine.errors import InvalidDeadline, RunNotRunning
from django_workflow_engine.hosts.maintenance import run_maintenance_tick
from django_workflow_engine.models import AICall, WorkflowJob, WorkflowRun, WorkflowStage
from django_workflow_engine.registry import registry

pytestmark = pytest.mark.django_db


STEPS_DONE: dict[str, int] = {}


class Steps(BaseModel):
    steps: int = 20
    step_seconds: float = 0.0


@define_stage(id="loop", name="Loop", input=Steps)
def loop(ctx):
    done = 0
    for i in range(ctx.input.steps):
        if ctx.input.step_seconds:
            time.sleep(ctx.input.step_seconds)
            ctx.check_cancelled()
        else:
            ctx.ai().generate_text("gpt-4o-mini", f"step {i}")
        done += 1
        STEPS_DONE[ctx.run_id] = done
    return {"done": done}


@define_stage(id="async_wait", name="Async wait", input=Steps)
async def async_wait(ctx):
    import asyncio

    await asyncio.sleep(ctx.input.step_seconds)
    STEPS_DONE[ctx.run_id] = 1
    return {"done": 1}


async_waiting = WorkflowBuilder("async-waiting", "Waits, async", input=Steps).pipe(async_wait).build()
looping = WorkflowBuilder("looping", "Loops", input=Steps).pipe(loop).build()
bounded = WorkflowBuilder("bounded", "Has 60 s", input=Steps, timeout=60).pipe(loop).build()


@pytest.fixture(autouse=True)
def flows():
    for flow in (looping, bounded, async_waiting):
        registry.register(flow)
    yield
    for flow in (looping, bounded, async_waiting):
        registry.unregister(flow.id)


def test_cancelling_a_run_stops_its_stage_at_the_next_ai_call(mock_ai):
    run = engine.start("looping", {"steps": 20})

    def reply(call):
        if AICall.objects.filter(run_id=run.id).count() == 4:  # the fifth call: an operator cancels meanwhile
            engine.cancel(run.id, reason="wrong document")
        return "ok"

    mock_ai.text(reply)
    engine.run_until_idle()

    run.refresh_from_db()
    assert run.status == "CANCELLED"
    calls = AICall.objects.filter(run_id=run.id).order_by("created_at")
    cancelled_at = run.completed_at
    assert calls.count() == 5  # the call under way when the cancel came is recorded; no other
    assert calls.filter(created_at__gt=cancelled_at).count() <= 1
    stage = WorkflowStage.objects.get(run=run, stage_id="loop")
    assert stage.status == "CANCELLED"
    assert stage.output_data is None  # the ghost's outcome was discarded


def test_a_finished_runs_helper_refuses_and_says_why(mock_ai):
    mock_ai.text("ok")
    run = engine.start("looping", {"steps": 1})
    engine.cancel(run.id)
    from django_workflow_engine.ai import create_ai_helper

    stage_helper = create_ai_helper(f"workflow.{run.id}.stage.loop", run=run)
    stage_helper.stage_pk = "a-stage"  # as inside the stage's execution
    with pytest.raises(RunNotRunning, match=rf"Run '{run.id}' is CANCELLED"):
        stage_helper.generate_text("gpt-4o-mini", "more?")
    assert not AICall.objects.filter(run_id=run.id).exists()


@pytest.mark.django_db(transaction=True)  # the cancel comes from another thread, on its own connection
def test_ctx_check_cancelled_stops_a_long_stage_cooperatively():
    import threading

    run = engine.start("looping", {"steps": 200, "step_seconds": 0.02})
    from django.db import connections

    def cancel() -> None:
        engine.cancel(run.id)
        connections.close_all()  # this thread's connection

    stopper = threading.Timer(0.5, cancel)
    stopper.start()
    began = time.monotonic()
    engine.run_until_idle()
    stopper.join()
    assert time.monotonic() - began < 3  # 200 steps would take 4 s
    assert 10 < STEPS_DONE[run.id] < 100  # stopped within a second of the cancel, by check_cancelled()
    assert WorkflowRun.objects.get(pk=run.id).status == "CANCELLED"
    assert WorkflowStage.objects.get(run=run).output_data is None


@pytest.mark.django_db(transaction=True)
def test_cancelling_a_run_cancels_its_running_async_stage():
    import threading

    from django.db import connections

    run = engine.start("async-waiting", {"step_seconds": 30})

    def cancel() -> None:
        engine.cancel(run.id)
        connections.close_all()

    stopper = threading.Timer(0.3, cancel)
    stopper.start()
    began = time.monotonic()
    engine.run_until_idle()
    stopper.join()
    assert time.monotonic() - began < 5  # cancelled at the watcher's next look, not after 30 s
    assert run.id not in STEPS_DONE
    assert WorkflowRun.objects.get(pk=run.id).status == "CANCELLED"


def test_a_deadline_interrupts_the_running_stage_and_fails_the_run():
    run = engine.start("looping", {"steps": 500, "step_seconds": 0.01}, deadline=0.5)
    began = time.monotonic()
    engine.run_until_idle()
    assert time.monotonic() - began < 3
    run.refresh_from_db()
    assert run.status == "FAILED"
    assert "Run deadline exceeded" in run.output["error"]["message"]
    assert WorkflowJob.objects.get(run=run).status == "FAILED"  # not retried: the run is over


def test_maintenance_fails_waiting_runs_past_their_deadline():
    waiting = engine.create("looping", {"steps": 0}, deadline=timedelta(milliseconds=200))
    later = engine.create("looping", {"steps": 0}, deadline=datetime.now(UTC) + timedelta(hours=1))
    time.sleep(0.3)
    tick = run_maintenance_tick()
    assert tick.deadlines_expired == 1
    waiting.refresh_from_db()
    assert waiting.status == "FAILED"
    assert waiting.output["error"]["code"] == "DEADLINE_EXCEEDED"
    assert "deadline exceeded" in waiting.output["error"]["message"].lower()
    assert WorkflowRun.objects.get(pk=later.id).status == "RUNNING"  # claimed by the same tick, not failed
    engine.run_until_idle()
    assert WorkflowRun.objects.get(pk=later.id).status == "COMPLETED"


def test_the_workflow_timeout_is_the_default_deadline():
    run = engine.start("bounded", {"steps": 0})
    assert timedelta(seconds=59) < run.deadline_at - run.created_at <= timedelta(seconds=60)
    own = engine.start("bounded", {"steps": 0}, deadline=5)
    assert own.deadline_at - own.created_at <= timedelta(seconds=5)
    assert WorkflowRun.objects.get(pk=own.id).deadline_at == own.deadline_at


@pytest.mark.parametrize(
    ("deadline", "message"),
    [
        (0, "must be a positive duration, got 0"),
        (-5, "must be a positive duration, got -5"),
        (float("nan"), "must be a positive duration"),
        (timedelta(seconds=-1), "must be a positive duration"),
        ("10", "must be a datetime, a timedelta or a number of seconds, got str"),
        (datetime(2030, 1, 1), "must be an aware datetime"),
        (datetime(2020, 1, 1, tzinfo=UTC), "has already passed"),
    ],
)
def test_bad_deadlines_are_refused_and_nothing_is_written(deadline, message):
    with pytest.raises(InvalidDeadline, match="Invalid deadline") as info:
        engine.start("looping", {"steps": 0}, deadline=deadline)
    assert message in str(info.value)
    assert not WorkflowRun.objects.exists()
