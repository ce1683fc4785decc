"""Hostile and malformed input: each gets a specific error and leaves the store as it was."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from django_workflow_engine import WorkflowBuilder, define_stage
from django_workflow_engine.errors import InvalidConfig, InvalidInput, StageNotFound, WorkflowNotFound
from django_workflow_engine.kernel import FlushOutbox, KernelOptions, ReapStaleLeases, RerunFrom, run_job
from django_workflow_engine.kernel.plugins import PluginRunner, define_plugin

pytestmark = pytest.mark.django_db


class Doc(BaseModel):
    text: str
    pages: int = 1


class Cfg(BaseModel):
    temperature: float = 0.5


@define_stage(id="read", name="Read", input=Doc, config=Cfg)
def read(ctx):
    return {"chars": len(ctx.input.text)}


@define_stage(id="weird", name="Weird")
def weird(ctx):
    return {"ok": True, "nested": {"when": object()}}


@define_stage(id="nan", name="NaN")
def nan(ctx):
    return {"score": float("inf")}


reader = WorkflowBuilder("reader", "Reader", input=Doc).pipe(read).build()
weird_flow = WorkflowBuilder("weird", "Weird").pipe(weird).build()
nan_flow = WorkflowBuilder("nan", "NaN").pipe(nan).build()

BAD_INPUTS = [
    ({"pages": 2}, "field 'text'"),
    ({"text": 5}, "field 'text'"),
    ({"text": "ok", "pages": "many"}, "field 'pages'"),
    ("just a string", "Input should be a valid dictionary"),
    ({"text": "a\x00b"}, "NUL"),
    ({"text": "\ud83d"}, "surrogate"),
]


@pytest.fixture
def h(make_kernel):
    return make_kernel([reader, weird_flow, nan_flow], options=KernelOptions(max_input_bytes=10_000))


@pytest.mark.parametrize(("payload", "message"), BAD_INPUTS)
def test_bad_workflow_input(h, payload, message):
    with pytest.raises(InvalidInput, match=message):
        h.start("reader", payload)
    assert h.run_count() == 0
    assert h.event_count() == 0


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"read": {"temperature": "hot"}}, "stage 'read': field 'temperature'"),
        ({"read": "warm"}, "stage 'read'"),
        ({"nope": {}}, "stage 'nope': unknown stage"),
        ("not a mapping", "must be an object"),
        ({"read": {"temperature": float("nan")}}, "nan"),
    ],
)
def test_bad_config(h, config, message):
    with pytest.raises(InvalidConfig, match=message):
        h.start("reader", {"text": "x"}, config=config)
    assert h.run_count() == 0


def test_untyped_input_nan_infinity_and_depth(h):
    untyped = WorkflowBuilder("untyped", "Untyped").pipe(define_stage(id="s", name="S", execute=lambda c: {})).build()
    h.registry.add(untyped)
    for payload, message in [
        ({"x": float("nan")}, "nan"),
        ({"x": [float("-inf")]}, "inf"),
        ({"x": {1: "int key"}}, "non-string key"),
        ({"x": b"bytes"}, "bytes"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            h.start("untyped", payload)
    deep: dict = {}
    node = deep
    for _ in range(100):
        node["n"] = {}
        node = node["n"]
    with pytest.raises(InvalidInput, match="nested more than 64"):
        h.start("untyped", deep)
    assert h.run_count() == 0


def test_input_size_limit_is_enforced_with_a_clear_error(h):
    with pytest.raises(InvalidInput, match=r"limit is 10000 .*MAX_INPUT_BYTES"):
        h.start("reader", {"text": "x" * 20_000})
    assert h.run_count() == 0


def test_unknown_ids(h):
    with pytest.raises(WorkflowNotFound):
        h.start("../../etc/passwd", {})
    run_id = h.start("reader", {"text": "hello"})
    h.drain()
    with pytest.raises(StageNotFound, match="'nope'"):
        h.dispatch(RerunFrom(run_id, "nope"))


def test_unserialisable_output_fails_the_stage_naming_the_field(h):
    run_id = h.start("weird", {})
    h.drain()
    assert h.run(run_id).status == "FAILED"
    message = h.stages(run_id)["weird"].error_message
    assert "nested.when" in message
    assert "object" in message
    assert h.jobs.jobs_for_run(run_id)[0].attempt == 1  # deterministic: not retried


def test_infinite_output_fails_the_stage(h):
    run_id = h.start("nan", {})
    h.drain()
    assert "score" in h.stages(run_id)["nan"].error_message


def test_job_for_a_removed_workflow_is_quarantined_not_looped(h):
    run_id = h.start("reader", {"text": "hi"})
    job = h.jobs.dequeue("w", h.clock.now())
    h.registry._workflows.pop("reader")
    outcome = run_job(h.kernel, job)
    assert outcome.outcome == "failed"
    assert "quarantined" in outcome.error
    assert h.jobs.get_job(job.id).status == "FAILED"
    assert h.run(run_id).status == "FAILED"
    assert h.drain().jobs == 0


def test_job_that_kills_its_worker_every_time_stops_after_max_attempts(h):
    run_id = h.start("reader", {"text": "hi"})
    for _ in range(3):
        job = h.jobs.dequeue("doomed", h.clock.now())
        assert job is not None
        h.clock.advance(seconds=400)  # the worker died: no heartbeat, no outcome
        h.dispatch(ReapStaleLeases(stale_after_seconds=300))
    failed = h.jobs.get_job(job.id)
    assert (failed.status, failed.attempt) == ("FAILED", 3)  # the reaper's own step is not an attempt
    run = h.run(run_id)
    assert run.status == "FAILED"
    assert "lost its worker on all 3 attempts" in run.output["error"]["message"]
    assert h.jobs.dequeue("w", h.clock.now()) is None


def test_corrupted_event_is_dead_lettered_not_a_crash_loop(make_kernel):
    def handle(event):
        event["stage_id"]

    h = make_kernel([reader], sink=PluginRunner([define_plugin(id="p", on=["workflow:created"], handle=handle)]))
    h.start("reader", {"text": "hi"})
    for _ in range(3):
        h.dispatch(FlushOutbox())
    dead = list(h.persistence.get_unpublished_events(100))
    assert all(e.event_type != "workflow:created" for e in dead)
    result = h.dispatch(FlushOutbox())
    assert result.failed == 0
