"""The example workflow tested the way a user would: with the fixtures of the engine's pytest plugin.

``fake_clock``, ``memory_harness``, ``workflow_runner``, ``fake_clock_engine`` and ``fake_clock_runner`` come from
``django_workflow_engine.testing.plugin``, which pytest loads through the package's ``pytest11`` entry point;
nothing is imported or configured here to get them.
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from django_workflow_engine import NotReady, Ready, Suspend, WorkflowBuilder, define_async_batch_stage
from documents.workflows import document_insights

TEXT = "Cats chase mice. Cats sleep a lot! Dogs chase cats and dogs bark?"


# -- in memory: no database ---------------------------------------------------------------------------------------


def test_in_memory_run_completes(memory_harness):
    harness = memory_harness([document_insights])

    run_id = harness.start("document-insights", {"title": "Pets", "text": TEXT}, config={"keywords": {"top_n": 2}})
    harness.run_until_idle()

    assert harness.run(run_id).status == "COMPLETED"
    assert harness.run(run_id).output["keywords"] == ["cats", "chase"]
    assert harness.event_types(run_id)[0] == "workflow:created"
    assert harness.event_types(run_id)[-1] == "workflow:completed"
    assert any(log.message == "Report ready" for log in harness.logs(run_id))


# -- on the ORM ---------------------------------------------------------------------------------------------------


def test_workflow_runner_returns_the_finished_run(workflow_runner):
    run = workflow_runner(document_insights, {"title": "Pets", "text": TEXT})

    assert run.status == "COMPLETED"
    assert run.output["summary"].startswith("'Pets': 13 words")
    assert sorted(run.stages.values_list("stage_id", "status")) == [
        ("ingest", "COMPLETED"),
        ("keywords", "COMPLETED"),
        ("report", "COMPLETED"),
        ("stats", "COMPLETED"),
    ]
    assert run.logs.filter(stage__stage_id="ingest", message="Ingested document").exists()


def test_workflow_runner_rerun_from_a_stage(workflow_runner):
    run = workflow_runner(document_insights, {"text": TEXT}, config={"keywords": {"top_n": 1}})
    assert run.output["keywords"] == ["cats"]

    workflow_runner.engine.rerun_from(run.id, "report")
    workflow_runner.drain()

    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert run.stages.get(stage_id="report").attempt == 1
    assert run.stages.get(stage_id="ingest").attempt == 0


# -- stepping time through a suspended stage on the ORM ------------------------------------------------------------


class Items(BaseModel):
    items: list[str]


class Counted(BaseModel):
    count: int


BATCHES: dict[str, dict] = {}  # stands in for a provider's batch API


def check_batch(state, ctx):
    batch = BATCHES[state["batch_id"]]
    if batch["status"] == "done":
        return Ready(output=Counted(count=len(batch["items"])))
    return NotReady()  # poll again after poll_interval


@define_async_batch_stage(id="submit", name="Submit batch", input=Items, output=Counted, check_completion=check_batch)
def submit(ctx):
    batch_id = f"batch-{ctx.run_id}"
    BATCHES[batch_id] = {"status": "running", "items": ctx.input.items}
    return Suspend(state={"batch_id": batch_id}, poll_interval=60, max_wait=3600)


batch_flow = WorkflowBuilder("plugin-batch", "Batch", input=Items, output=Counted).pipe(submit).build()


def test_suspended_stage_resumes_when_the_clock_moves(fake_clock_runner, fake_clock):
    run = fake_clock_runner(batch_flow, {"items": ["a", "b", "c"]})
    assert run.status == "RUNNING"
    assert run.stages.get().status == "SUSPENDED"

    BATCHES[f"batch-{run.id}"]["status"] = "done"
    fake_clock_runner.drain()
    run.refresh_from_db()
    assert run.status == "RUNNING"  # the first poll is not due until 60 s after suspending

    fake_clock.advance(seconds=60)
    fake_clock_runner.drain()

    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert run.output == {"count": 3}


def test_a_suspended_stage_that_waits_too_long_fails_the_run(fake_clock_runner, fake_clock):
    run = fake_clock_runner(batch_flow, {"items": ["a"]})

    fake_clock.advance(hours=2)  # past max_wait (1 h); the batch never finishes
    fake_clock_runner.drain()

    run.refresh_from_db()
    assert run.status == "FAILED"
    assert "exceeded its max wait" in run.output["error"]["message"]


@pytest.mark.django_db
def test_fake_clock_engine_is_an_engine_on_the_fake_clock(fake_clock_engine, fake_clock):
    assert fake_clock_engine.kernel.clock is fake_clock
