"""A run that leaves RUNNING by the reaper or a suspended stage's give-up hands its concurrency slot over in the
same transaction (memory and ORM kernels)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from django_workflow_engine import NotReady, Suspend, WorkflowBuilder, define_async_batch_stage
from django_workflow_engine.kernel import ReapStuckRuns
from tests.flows_limits import Order, handle, per_customer

pytestmark = pytest.mark.django_db


@define_async_batch_stage(id="wait", name="Wait", check_completion=lambda state, ctx: NotReady(next_check_in=30))
def wait(ctx):
    return Suspend(state={}, poll_interval=30, max_wait=timedelta(minutes=5))


limited_batch = (
    WorkflowBuilder("limited-batch", "A batch that never finishes", input=Order, max_concurrent_runs=1)
    .pipe(handle)
    .pipe(wait)
    .build()
)


@pytest.fixture
def h(make_kernel):
    return make_kernel([per_customer, limited_batch])


def test_a_reaped_run_hands_its_slot_to_the_next_waiting_run(h):
    holder = h.start("per-customer", {"customer": "acme", "n": 1})
    waiting = h.start("per-customer", {"customer": "acme", "n": 2})
    assert (h.run(holder).status, h.run(waiting).status) == ("RUNNING", "PENDING")
    job = h.jobs.dequeue("w", h.clock.now())
    assert job.run_id == holder
    h.persistence.update_stage(h.stages(holder)["handle"].id, {"status": "RUNNING"}, h.clock.now())
    h.delete_job(job.id)  # the worker died and its job row is gone: only the reaper can end the run
    h.clock.advance(seconds=1000)

    assert h.dispatch(ReapStuckRuns(stuck_after_seconds=900)).failed == 1

    assert h.run(holder).status == "FAILED"
    assert h.run(waiting).status == "RUNNING"  # started by the reaper's transaction, not a later sweep
    h.drain()
    assert h.run(waiting).status == "COMPLETED"


def test_a_suspended_stage_that_gives_up_hands_its_slot_over(h):
    holder = h.start("limited-batch", {"customer": "acme", "n": 1})
    waiting = h.start("limited-batch", {"customer": "acme", "n": 2})
    h.drain()
    assert (h.run(holder).status, h.stages(holder)["wait"].status) == ("RUNNING", "SUSPENDED")
    assert h.run(waiting).status == "PENDING"
    for _ in range(20):  # polled every 30 s until its five minutes are over
        h.clock.advance(seconds=31)
        h.poll()
        if h.run(holder).status != "RUNNING":
            break

    assert h.run(holder).status == "FAILED"
    assert h.run(waiting).status == "RUNNING"  # started by the give-up's transaction
