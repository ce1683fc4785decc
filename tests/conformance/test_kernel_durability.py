"""Suspend/poll, retries, leases, stuck runs, idempotency and the outbox on the in-memory adapters."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import BaseModel

from django_workflow_engine import (
    CompletionError,
    NotReady,
    Ready,
    Suspend,
    WorkflowBuilder,
    define_async_batch_stage,
    define_stage,
)
from django_workflow_engine.errors import IdempotencyInProgressError
from django_workflow_engine.kernel import (
    CreateRun,
    ExecuteJob,
    FlushOutbox,
    KernelOptions,
    ReapStaleLeases,
    ReapStuckRuns,
    ReplayDeadLetters,
    RerunFrom,
)
from django_workflow_engine.kernel.plugins import PluginRunner, define_plugin

pytestmark = pytest.mark.django_db

POLLS: list[dict] = []
READY_AFTER = {"n": 2}


class Out(BaseModel):
    answer: str


def _check(state, ctx):
    POLLS.append(dict(state))
    if state.get("mode") == "error":
        return CompletionError("provider said no")
    if state.get("mode") == "raise":
        raise ValueError("poll exploded")
    if len(POLLS) >= READY_AFTER["n"]:
        return Ready(output={"answer": f"done:{state['batch_id']}"})
    return NotReady(next_check_in=10)


@define_async_batch_stage(id="batch", name="Batch", output=Out, check_completion=_check)
def batch(ctx):
    if ctx.resume_state:
        return {"answer": "resumed"}
    mode = (ctx.workflow_context.get("prep") or {}).get("mode", "ok")
    return Suspend(state={"batch_id": "b-1", "mode": mode}, poll_interval=30, max_wait=timedelta(minutes=5))


class Mode(BaseModel):
    mode: str


@define_stage(id="prep", name="Prep", input=Mode, output=Mode)
def prep(ctx):
    return {"mode": ctx.input.mode}


@define_stage(id="after", name="After", dependencies=["batch"])
def after(ctx):
    return {"final": ctx.require("batch")["answer"].upper()}


@define_stage(id="side", name="Side")
def side(ctx):
    return {"side": True}


suspending = WorkflowBuilder("suspending", "Suspending").pipe(prep).parallel([batch, side]).pipe(after).build()
simple_batch = WorkflowBuilder("simple-batch", "Simple batch").pipe(prep).pipe(batch).pipe(after).build()


@pytest.fixture(autouse=True)
def _reset():
    POLLS.clear()
    READY_AFTER["n"] = 2


@pytest.fixture
def h(make_kernel):
    return make_kernel([suspending, simple_batch])


def test_suspended_stage_holds_its_parallel_group_then_resumes(h):
    run_id = h.start("suspending", {"mode": "ok"})
    h.drain()
    stages = h.stages(run_id)
    assert stages["batch"].status == "SUSPENDED"
    assert stages["side"].status == "COMPLETED"
    assert "after" not in stages
    assert stages["batch"].suspended_state == {"batch_id": "b-1", "mode": "ok"}
    assert stages["batch"].next_poll_at == h.clock.now() + timedelta(seconds=30)
    assert h.poll().checked == 0  # not due yet
    h.clock.advance(seconds=31)
    assert h.poll().resumed == 0  # first poll: not ready, re-poll in 10 s
    assert h.stages(run_id)["batch"].next_poll_at == h.clock.now() + timedelta(seconds=10)
    h.clock.advance(seconds=11)
    result = h.poll()
    assert result.resumed_run_ids == [run_id]
    h.drain()
    run = h.run(run_id)
    assert run.status == "COMPLETED"
    assert run.output == {"final": "DONE:B-1"}
    assert {j.status for j in h.jobs.jobs_for_run(run_id)} == {"COMPLETED"}
    types = h.event_types(run_id)
    assert types.count("stage:suspended") == 1
    assert "workflow:suspended" in types


def test_completion_error_fails_stage_and_run(h):
    run_id = h.start("simple-batch", {"mode": "error"})
    h.drain()
    h.clock.advance(seconds=31)
    assert h.poll().failed == 1
    run = h.run(run_id)
    assert run.status == "FAILED"
    assert run.output["error"]["message"] == "provider said no"
    assert h.stages(run_id)["batch"].status == "FAILED"


def test_check_completion_exception_fails_run(h):
    run_id = h.start("simple-batch", {"mode": "raise"})
    h.drain()
    h.clock.advance(seconds=31)
    h.poll()
    assert h.run(run_id).status == "FAILED"
    assert "ValueError: poll exploded" in h.stages(run_id)["batch"].error_message


def test_max_wait_exceeded_fails_naming_stage_and_deadline(h):
    READY_AFTER["n"] = 10**6
    run_id = h.start("simple-batch", {"mode": "ok"})
    h.drain()
    deadline = h.stages(run_id)["batch"].max_wait_until
    for _ in range(40):
        h.clock.advance(seconds=31)
        h.poll()
        if h.run(run_id).status != "RUNNING":
            break
    run = h.run(run_id)
    assert run.status == "FAILED"
    message = h.stages(run_id)["batch"].error_message
    assert "'batch'" in message
    assert deadline.isoformat() in message


def test_long_suspended_wait_is_not_reaped_as_stuck(h):
    READY_AFTER["n"] = 10**6
    run_id = h.start("simple-batch", {"mode": "ok"})
    h.drain()
    h.persistence.update_stage(
        h.stages(run_id)["batch"].id,
        {"next_poll_at": h.clock.now() + timedelta(hours=2), "max_wait_until": h.clock.now() + timedelta(hours=3)},
        h.clock.now(),
    )
    h.clock.advance(hours=1)
    assert h.dispatch(ReapStuckRuns(stuck_after_seconds=900)).failed == 0
    assert h.run(run_id).status == "RUNNING"


def test_run_with_no_activity_is_reaped_with_clear_error(h):
    run_id = h.start("simple-batch", {"mode": "ok"})
    job = h.jobs.dequeue("w", h.clock.now())
    h.persistence.update_stage(h.stages(run_id)["prep"].id, {"status": "RUNNING"}, h.clock.now())
    h.clock.advance(seconds=1000)
    # while the job exists (leased, or released back to the queue by the lease reaper) the run is not stuck
    assert h.dispatch(ReapStuckRuns(stuck_after_seconds=900)).failed == 0
    h.delete_job(job.id)  # the job row is gone: nothing will ever finish the RUNNING stage
    assert h.dispatch(ReapStuckRuns(stuck_after_seconds=900)).failed == 1
    run = h.run(run_id)
    assert run.status == "FAILED"
    assert run.output["error"]["code"] == "STUCK_RUN_REAPED"
    assert run.output["error"]["stage_statuses"] == [{"stage_id": "prep", "status": "RUNNING"}]


def test_queued_job_waiting_for_a_worker_is_not_stuck(h):
    run_id = h.start("simple-batch", {"mode": "ok"})
    h.clock.advance(hours=2)  # a long backlog: no worker has reached this run yet
    assert h.dispatch(ReapStuckRuns(stuck_after_seconds=900)).failed == 0
    h.drain()
    assert h.stages(run_id)["batch"].status == "SUSPENDED"


def test_settled_run_that_never_transitioned_is_advanced_by_the_reaper(h):
    from django_workflow_engine.kernel import ExecuteJob

    run_id = h.start("simple-batch", {"mode": "ok"})
    job = h.jobs.dequeue("w", h.clock.now())
    h.dispatch(ExecuteJob(run_id, "simple-batch", "prep"))
    h.jobs.complete(job.id, h.clock.now())  # the worker died before transitioning the run
    h.clock.advance(seconds=1000)
    result = h.dispatch(ReapStuckRuns(stuck_after_seconds=900))
    assert (result.failed, result.requeued) == (0, 1)
    assert h.stages(run_id)["batch"].status == "PENDING"


def test_pending_stage_that_lost_its_job_is_requeued_not_failed(h):
    run_id = h.start("simple-batch", {"mode": "ok"})
    for job in h.jobs.jobs_for_run(run_id):
        h.delete_job(job.id)
    h.clock.advance(seconds=1000)
    result = h.dispatch(ReapStuckRuns(stuck_after_seconds=900))
    assert (result.failed, result.requeued) == (0, 1)
    h.drain()
    assert h.stages(run_id)["batch"].status == "SUSPENDED"


def test_stale_lease_is_released_and_job_redelivered(h):
    run_id = h.start("simple-batch", {"mode": "ok"})
    job = h.jobs.dequeue("dead-worker", h.clock.now())
    h.clock.advance(seconds=100)
    assert h.dispatch(ReapStaleLeases(stale_after_seconds=300)).released == 0
    h.clock.advance(seconds=301)
    assert h.dispatch(ReapStaleLeases(stale_after_seconds=300)).released == 1
    again = h.jobs.dequeue("live-worker", h.clock.now())
    assert (again.id, again.attempt) == (job.id, 2)
    assert h.jobs.touch(again.id, "live-worker", h.clock.now())
    assert not h.jobs.touch(again.id, "dead-worker", h.clock.now())
    assert run_id


def test_validation_errors_are_not_retried(h):
    h.registry.add(
        WorkflowBuilder("typed", "Typed").pipe(define_stage(id="t", name="T", input=Out, execute=lambda c: {})).build()
    )
    run_id = h.dispatch(CreateRun(workflow_id="typed", input={"wrong": 1}, start=True)).run_id
    h.drain()
    assert h.run(run_id).status == "FAILED"
    assert h.jobs.jobs_for_run(run_id)[0].attempt == 1
    assert "field 'answer'" in h.stages(run_id)["t"].error_message


def test_backoff_delays_retries(h):
    attempts = []

    def flaky(ctx):
        attempts.append(h.clock.now())
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return {"ok": True}

    h = type(h)([], options=KernelOptions(retry_base_seconds=2), clock=h.clock)
    h.registry.add(WorkflowBuilder("flaky", "Flaky").pipe(define_stage(id="f", name="F", execute=flaky)).build())
    run_id = h.start("flaky", {})
    h.drain()
    assert len(attempts) == 1
    assert h.run(run_id).status == "RUNNING"  # the failed stage has a retry pending: run not failed
    h.clock.advance(seconds=2)
    h.drain()
    assert len(attempts) == 2
    h.clock.advance(seconds=3)
    h.drain()
    assert len(attempts) == 2  # second backoff is 4 s
    h.clock.advance(seconds=1)
    h.drain()
    assert h.run(run_id).status == "COMPLETED"


def test_idempotent_create_replays_and_rejects_in_progress(h):
    first = h.dispatch(CreateRun(workflow_id="simple-batch", input={"mode": "ok"}, idempotency_key="k1"))
    again = h.dispatch(CreateRun(workflow_id="simple-batch", input={"mode": "ok"}, idempotency_key="k1"))
    assert first == again
    assert h.run_count() == 1
    assert h.event_count() == 1
    h.persistence.acquire_idempotency_key("k2", "run.create", h.clock.now(), 600)
    with pytest.raises(IdempotencyInProgressError, match='"run.create" with idempotency key "k2"'):
        h.dispatch(CreateRun(workflow_id="simple-batch", input={"mode": "ok"}, idempotency_key="k2"))
    h.clock.advance(seconds=601)
    h.dispatch(CreateRun(workflow_id="simple-batch", input={"mode": "ok"}, idempotency_key="k2"))
    assert h.run_count() == 2


def test_failed_handler_releases_its_key(h):
    with pytest.raises(Exception, match="not registered"):
        h.dispatch(CreateRun(workflow_id="nope", input={}, idempotency_key="k"))
    assert not h.has_idempotency_key("k", "run.create")


def test_idempotent_execute_and_rerun(h):
    run_id = h.start("simple-batch", {"mode": "ok"})
    a = h.dispatch(ExecuteJob(run_id, "simple-batch", "prep", idempotency_key="j1"))
    b = h.dispatch(ExecuteJob(run_id, "simple-batch", "prep", idempotency_key="j1"))
    assert a.outcome == b.outcome == "completed"
    assert h.event_types(run_id).count("stage:completed") == 1


def test_outbox_dead_letters_after_three_failures_then_replays_in_order(make_kernel):
    seen = []
    failures = {"left": 3}

    def handle(event):
        if event["type"] == "workflow:created" and failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("plugin down")
        seen.append(event["type"])

    sink = PluginRunner([define_plugin(id="p", on=["*"], handle=handle)], max_retries=3)
    h = make_kernel([simple_batch], sink=sink)
    run_id = h.start("simple-batch", {"mode": "ok"})
    for _ in range(3):
        result = h.dispatch(FlushOutbox())
        assert result.published == 0  # the failed first event blocks the run's later ones
    assert h.persistence.get_events(run_id)[0].dlq_at is not None
    assert h.dispatch(FlushOutbox()).published == 1  # dead-lettered event no longer blocks
    assert seen == ["workflow:started"]
    assert h.dispatch(ReplayDeadLetters()).replayed == 1
    assert h.dispatch(FlushOutbox()).published == 1
    assert seen == ["workflow:started", "workflow:created"]


def test_define_plugin_rejects_unknown_event_types():
    with pytest.raises(ValueError, match="unknown event type"):
        define_plugin(id="p", on=["workflow:exploded"], handle=print)


def test_rerun_after_failure_uses_fresh_attempt(h):
    run_id = h.start("simple-batch", {"mode": "error"})
    h.drain()
    h.clock.advance(seconds=31)
    h.poll()
    assert h.run(run_id).status == "FAILED"
    h.dispatch(RerunFrom(run_id, "batch"))
    assert h.stages(run_id)["batch"].attempt == 1
    assert h.run(run_id).status == "RUNNING"
