"""Async-batch stages that also wait for a signal (``Suspend(wait_for_signal=...)``): the signal puts the stage's job
back in the queue and the next drain polls it, with no maintenance poll; a signal that comes before the stage
waits is kept for a stage that declares it (memory and ORM kernels, fake clock)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import BaseModel

from django_workflow_engine import (
    CompletionError,
    InvalidRunState,
    NotReady,
    Ready,
    SignalNotExpected,
    Suspend,
    WorkflowBuilder,
    define_async_batch_stage,
    define_stage,
)
from django_workflow_engine.core.errors import WorkflowDefinitionError

pytestmark = pytest.mark.django_db

POLLS: list[dict] = []


class Doc(BaseModel):
    name: str


class Rendered(BaseModel):
    job: str
    url: str


def _check(state, ctx):
    POLLS.append(dict(state))
    answer = state.get("signal")
    if answer is None:
        return NotReady()
    if answer.get("error"):
        return CompletionError(f"renderer said: {answer['error']}")
    if not answer.get("url"):
        return NotReady(next_check_in=60)
    return Ready(output={"job": state["job"], "url": answer["url"]})


@define_async_batch_stage(
    id="render", name="Render", input=Doc, check_completion=_check, output=Rendered, signals=["rendered"]
)
def render(ctx):
    return Suspend(state={"job": f"r-{ctx.input.name}"}, poll_interval=3600, wait_for_signal="rendered")


@define_async_batch_stage(id="render", name="Render", check_completion=_check, output=Rendered)
def render_undeclared(ctx):
    return Suspend(state={"job": "r-1"}, poll_interval=3600, wait_for_signal="rendered")


@define_stage(id="prep", name="Prep", input=Doc, output=Doc)
def prep(ctx):
    return Doc(name=ctx.input.name.lower())


@define_stage(id="publish", name="Publish", input=Rendered, output=Rendered)
def publish(ctx):
    return Rendered(job=ctx.input.job, url=ctx.input.url.upper())


declared = (
    WorkflowBuilder("render-declared", "Render", input=Doc, output=Rendered)
    .pipe(prep)
    .pipe(render)
    .pipe(publish)
    .build()
)
undeclared = WorkflowBuilder("render-undeclared", "Render", input=Doc, output=Rendered).pipe(render_undeclared).build()


@pytest.fixture(autouse=True)
def _reset():
    POLLS.clear()


@pytest.fixture
def h(make_kernel):
    return make_kernel([declared, undeclared])


def _waiting(h, wid="render-declared"):
    run_id = h.start(wid, {"name": "Report"})
    h.drain()
    assert h.stages(run_id)["render"].status == "SUSPENDED"
    return run_id


def _job(h, run_id, stage_id="render"):
    (job,) = [j for j in h.jobs.jobs_for_run(run_id) if j.stage_id == stage_id]
    return job


def test_a_signal_wakes_the_stage_through_its_job_and_the_next_drain_polls_it(h):
    run_id = _waiting(h)
    assert h.poll().checked == 0  # its next poll is an hour away
    attempt = _job(h, run_id).attempt

    result = h.signal(run_id, "rendered", {"url": "https://cdn/r"}, actor="renderer")

    assert (result.delivered, result.stage_id) == (True, "render")
    job = _job(h, run_id)
    assert (job.status, job.available_at, job.attempt) == ("PENDING", h.clock.now(), attempt - 1)
    stage = h.stages(run_id)["render"]
    assert stage.suspended_state == {"job": "r-report", "signal": {"url": "https://cdn/r"}}  # the wait is over
    assert h.poll().checked == 0  # not the maintenance poll: the stage's job
    drained = h.drain()
    assert drained.completed == 2  # the poll, then publish
    run = h.run(run_id)
    assert (run.status, run.output) == ("COMPLETED", {"job": "r-report", "url": "HTTPS://CDN/R"})
    assert _job(h, run_id).attempt == attempt  # the poll did not use an attempt
    types = h.event_types(run_id)
    assert types.index("signal:received") < types.index("stage:resumed") < types.index("workflow:completed")
    assert types.count("stage:completed") == 3
    (signal,) = h.persistence.get_signals(run_id)
    assert (signal.actor, signal.consumed_by) == ("renderer", h.stages(run_id)["render"].id)
    with pytest.raises(InvalidRunState, match="it is COMPLETED"):
        h.signal(run_id, "rendered", {"url": "again"})


def test_one_signal_per_wait_and_a_not_ready_poll_suspends_the_job_again(h):
    run_id = _waiting(h)
    h.signal(run_id, "rendered", {"url": ""})  # not finished yet, says the renderer
    with pytest.raises(SignalNotExpected, match="is SUSPENDED: it already received its signal"):
        h.signal(run_id, "rendered", {"url": "https://cdn/second"})
    h.drain()
    job = _job(h, run_id)
    assert (job.status, job.available_at) == ("SUSPENDED", h.clock.now() + timedelta(seconds=60))
    assert h.stages(run_id)["render"].next_poll_at == h.clock.now() + timedelta(seconds=60)
    assert len(h.persistence.get_signals(run_id)) == 1
    h.clock.advance(seconds=61)
    h.run_until_idle()
    assert POLLS[-1]["signal"] == {"url": ""}  # the maintenance poll goes on as before
    assert h.run(run_id).status == "RUNNING"


def test_a_completion_error_after_the_signal_fails_the_stage_and_run(h):
    run_id = _waiting(h)
    h.signal(run_id, "rendered", {"error": "font missing"})
    h.drain()
    run = h.run(run_id)
    assert run.status == "FAILED"
    assert h.stages(run_id)["render"].error_message == "renderer said: font missing"
    assert _job(h, run_id).status == "FAILED"
    assert "workflow:failed" in h.event_types(run_id)


def test_a_signal_before_the_wait_is_kept_and_handed_over_when_the_stage_suspends(h):
    run_id = h.start("render-declared", {"name": "Early"})
    result = h.signal(run_id, "rendered", {"url": "https://cdn/early"}, idempotency_key="hook-1")
    assert (result.delivered, result.stage_id) == (False, "render")
    with pytest.raises(SignalNotExpected, match="already kept"):
        h.signal(run_id, "rendered", {"url": "https://cdn/other"})
    again = h.signal(run_id, "rendered", {"url": "ignored"}, idempotency_key="hook-1")
    assert (again.signal_id, again.replayed) == (result.signal_id, True)

    h.drain()  # prep, render suspends with the kept payload, its job is woken and polled, publish

    run = h.run(run_id)
    assert (run.status, run.output["url"]) == ("COMPLETED", "HTTPS://CDN/EARLY")
    assert POLLS == [{"job": "r-early", "signal": {"url": "https://cdn/early"}}]
    types = h.event_types(run_id)
    assert types.index("stage:suspended") < types.index("stage:resumed") < types.index("workflow:completed")
    assert h.persistence.next_signal(run_id, "rendered") is None
    assert h.persistence.get_signals(run_id)[0].consumed_by == h.stages(run_id)["render"].id


def test_an_early_signal_for_an_undeclared_wait_is_refused_with_the_fix(h):
    run_id = h.start("render-undeclared", {"name": "x"})
    with pytest.raises(SignalNotExpected, match=r"signals=\[\.\.\.\]"):
        h.signal(run_id, "rendered", {"url": "u"})
    assert h.persistence.get_signals(run_id) == []
    h.drain()
    assert h.signal(run_id, "rendered", {"url": "u"}).delivered  # once it waits, the name wakes it
    h.drain()
    assert h.run(run_id).status == "COMPLETED"


def test_a_woken_stage_of_a_cancelled_run_is_not_polled(h):
    run_id = _waiting(h)
    h.signal(run_id, "rendered", {"url": "u"})
    assert h.cancel(run_id)
    h.drain()
    assert h.run(run_id).status == "CANCELLED"
    assert POLLS == []
    assert _job(h, run_id).status == "CANCELLED"


def test_the_maintenance_poll_and_the_woken_job_complete_the_stage_once(h):
    run_id = _waiting(h)
    h.signal(run_id, "rendered", {"url": "u"})
    h.clock.advance(seconds=3601)  # its regular poll is due too
    assert h.poll().resumed == 1  # the maintenance loop gets there first
    h.drain()  # the woken job finds the stage completed: settled, not polled again
    assert h.run(run_id).status == "COMPLETED"
    assert len(POLLS) == 1
    assert h.event_types(run_id).count("workflow:completed") == 1
    assert {j.status for j in h.jobs.jobs_for_run(run_id)} == {"COMPLETED"}


def test_two_stages_of_a_workflow_cannot_wait_for_one_signal():
    again = define_async_batch_stage(
        id="again", name="Again", check_completion=_check, execute=render.execute, signals="rendered"
    )
    builder = WorkflowBuilder("twice", "Twice").pipe(render).pipe(again)
    with pytest.raises(WorkflowDefinitionError, match="'render' and 'again' both wait for signal 'rendered'"):
        builder.build()
    with pytest.raises(WorkflowDefinitionError, match="'s'.*signal name"):
        define_async_batch_stage(id="s", name="S", check_completion=_check, execute=render.execute, signals=["a b"])
