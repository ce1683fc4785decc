"""A delayed start through the kernel, the same on the in-memory and the ORM adapters."""

from __future__ import annotations

from datetime import timedelta

import pytest

from django_workflow_engine.errors import InvalidStartTime
from django_workflow_engine.kernel import ClaimPendingRuns, CreateRun
from tests import flows

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _reset():
    flows.reset()
    yield
    flows.reset()


@pytest.fixture
def h(make_kernel):
    return make_kernel([flows.diamond])


def test_started_run_waits_until_its_time(h):
    t0 = h.clock.now()
    run_id = h.start("diamond", {"value": 5}, delay=timedelta(minutes=5))
    run = h.run(run_id)
    assert run.status == "RUNNING"
    assert run.scheduled_at == t0 + timedelta(minutes=5)
    assert run.started_at == run.scheduled_at
    h.drain()
    assert h.stages(run_id)["a"].status == "PENDING"
    h.clock.advance(minutes=5)
    h.drain()
    assert h.run(run_id).status == "COMPLETED"
    assert h.stages(run_id)["a"].started_at == t0 + timedelta(minutes=5)


def test_a_created_run_claimed_early_keeps_its_time(h):
    """A PENDING run with a time (CreateRun without start) is claimed by maintenance, and still waits."""
    t0 = h.clock.now()
    run_id = h.dispatch(CreateRun(workflow_id="diamond", input={"value": 1}, delay=60)).run_id
    h.dispatch(ClaimPendingRuns(worker_id="m", max_claims=5))
    h.drain()
    assert h.stages(run_id)["a"].status == "PENDING"
    h.clock.advance(seconds=60)
    h.drain()
    assert h.run(run_id).status == "COMPLETED"
    assert h.stages(run_id)["a"].started_at == t0 + timedelta(seconds=60)


def test_both_start_at_and_delay_are_refused_before_anything_is_written(h):
    with pytest.raises(InvalidStartTime, match="not both"):
        h.start("diamond", {"value": 1}, start_at=h.clock.now(), delay=1)
    assert h.run_count() == 0
