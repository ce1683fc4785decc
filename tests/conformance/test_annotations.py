"""Annotations through the kernel on every adapter."""

from __future__ import annotations

from datetime import timedelta

import pytest

from django_workflow_engine import WorkflowBuilder, define_stage
from django_workflow_engine.errors import RunNotFound, WorkflowEngineError
from django_workflow_engine.kernel import CancelRun, CreateRun, RerunFrom, run_job

pytestmark = pytest.mark.django_db


@define_stage(id="decide", name="Decide")
def decide(ctx):
    ctx.annotate("decision.outcome", "approved", actor={"kind": "agent", "id": "bot"})
    ctx.annotate({"decision.confidence": 0.9, "decision.skipped": None}, emit_event=True)
    if ctx.config is None and ctx.workflow_context.get("boom"):
        raise RuntimeError("never")
    return {"ok": True}


@define_stage(id="explode", name="Explode")
def explode(ctx):
    ctx.annotate("attempted", True)
    raise ValueError("nope")


annotated = WorkflowBuilder("annotated", "Annotated").pipe(decide).build()
exploding = WorkflowBuilder("exploding", "Exploding").pipe(explode).build()


@pytest.fixture
def h(make_kernel):
    return make_kernel([annotated, exploding])


def test_stage_annotations_are_written_with_the_outcome(h):
    run_id = h.start("annotated", {})
    h.drain()
    rows = h.kernel.annotations.list(run_id)
    assert [(r.key, r.value, r.scope, r.scope_id, r.actor_kind) for r in rows] == [
        ("decision.outcome", "approved", "stage", "decide", "agent"),
        ("decision.confidence", 0.9, "stage", "decide", None),
    ]
    assert rows[0].stage_pk == h.stages(run_id)["decide"].id
    assert h.event_types(run_id).count("annotation:created") == 1


def test_annotations_before_a_failure_are_kept(h):
    run_id = h.start("exploding", {})
    h.drain()
    assert h.run(run_id).status == "FAILED"
    assert {r.key for r in h.kernel.annotations.list(run_id)} == {"attempted"}


def test_annotations_of_a_ghost_are_dropped(h):
    run_id = h.start("annotated", {})
    job = h.jobs.dequeue("w", h.clock.now())
    original = decide.execute

    def cancel_then_annotate(ctx):
        h.dispatch(CancelRun(run_id))
        return original(ctx)

    object.__setattr__(decide, "execute", cancel_then_annotate)
    try:
        assert run_job(h.kernel, job).ghost is True
    finally:
        object.__setattr__(decide, "execute", original)
    assert h.kernel.annotations.list(run_id) == []


def test_attach_dedupes_on_idempotency_key_and_filters(h):
    run_id = h.start("annotated", {})
    attach = h.kernel.annotations.attach
    attach(run_id, {"approval.approvers": ["ann", "bob"]}, actor={"kind": "user", "id": "ann"}, idempotency_key="k1")
    attach(run_id, {"approval.approvers": ["zed"]}, idempotency_key="k1")
    attach(run_id, {"trigger.source": "api"})
    attach(run_id, {"trigger.source": "api"})
    h.clock.advance(seconds=10)
    attach(run_id, {"trigger.reason": "late"}, emit_event=True)
    listed = h.kernel.annotations.list
    assert [r.value for r in listed(run_id, key="approval.approvers")] == [["ann", "bob"]]
    assert len(listed(run_id, key="trigger.source")) == 2
    assert {r.key for r in listed(run_id, key_prefix="trigger.")} == {"trigger.source", "trigger.reason"}
    assert [r.key for r in listed(run_id, actor_id="ann")] == ["approval.approvers"]
    assert [r.key for r in listed(run_id, since=h.clock.now() - timedelta(seconds=1))] == ["trigger.reason"]
    assert len(listed(run_id, limit=2)) == 2
    assert "annotation:created" in h.event_types(run_id)


def test_attach_errors(h):
    with pytest.raises(RunNotFound):
        h.kernel.annotations.attach("missing", {"a": 1})
    run_id = h.start("annotated", {})
    with pytest.raises(WorkflowEngineError, match="NUL"):
        h.kernel.annotations.attach(run_id, {"a": "x\x00y"})
    with pytest.raises(WorkflowEngineError, match="Unknown annotation filter"):
        h.kernel.annotations.list(run_id, colour="red")
    assert h.kernel.annotations.list(run_id) == []


def test_run_create_annotations_and_rerun_keeps_them(h):
    run_id = h.dispatch(
        CreateRun(
            workflow_id="annotated",
            input={},
            start=True,
            annotations=({"key": "trigger.source", "value": "cron"},),
        )
    ).run_id
    h.drain()
    h.dispatch(RerunFrom(run_id, "decide"))
    h.drain()
    rows = h.kernel.annotations.list(run_id)
    assert rows[0].key == "trigger.source"
    # the first generation's stage annotations survive the rerun, still linked to its (superseded) record
    first = [r for r in rows if r.key == "decision.outcome"]
    assert [r.attempt for r in first] == [0, 1]
    history = {s.id: s for s in h.persistence.get_stage_history(run_id)}
    assert history[first[0].stage_pk].superseded_at is not None
    assert history[first[1].stage_pk].superseded_at is None
