"""A run that leaves RUNNING by the reaper hands its concurrency slot over in the same transaction (memory and
ORM kernels)."""

from __future__ import annotations

import pytest

from django_workflow_engine.kernel import ReapStuckRuns
from tests.flows_limits import per_customer

pytestmark = pytest.mark.django_db


@pytest.fixture
def h(make_kernel):
    return make_kernel([per_customer])


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
