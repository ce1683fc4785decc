"""Child runs on the in-memory kernel: started once per (stage, key), awaited, cancelled with their parent."""

from __future__ import annotations

from datetime import timedelta

import pytest

from django_workflow_engine.errors import InvalidArgument, WorkflowNotFound
from django_workflow_engine.testing import MemoryHarness
from tests import flows_children
from tests.flows_children import onboard_all, onboarding


@pytest.fixture
def harness():
    flows_children.STARTED.clear()
    return MemoryHarness([onboard_all, onboarding])


def test_a_stage_starts_children_waits_for_them_and_gets_their_outputs_and_failures(harness):
    parent = harness.start("onboard-all", {"names": ["ada", "bob", "cy"], "fail": "bob"})
    harness.run_until_idle()

    children = harness.persistence.get_child_runs(parent_run_id=parent)
    assert [c.child_key for c in children] == ["ada", "bob", "cy"]
    stage = harness.persistence.get_stage(parent, "fan_out")
    assert {(c.parent_run_id, c.parent_stage_id) for c in children} == {(parent, stage.id)}
    assert [c.status for c in children] == ["COMPLETED", "FAILED", "COMPLETED"]
    # The last child to finish woke the parent stage: it completed without waiting its hour-long poll interval.
    run = harness.persistence.get_run(parent)
    assert run.status == "COMPLETED"
    output = harness.persistence.get_stage(parent, "fan_out").output_data["value"]
    assert output["done"] == {"ada": {"welcomed": "ada"}, "cy": {"welcomed": "cy"}}
    assert "no address for bob" in output["failed"]["bob"]


def test_a_stage_that_runs_again_gets_the_same_children(harness):
    parent = harness.start("onboard-all", {"names": ["ada", "bob"]})
    harness.drain(max_jobs=1)  # the parent stage ran and started two children
    first = list(flows_children.STARTED)
    stage = harness.persistence.get_stage(parent, "fan_out")
    from django_workflow_engine.kernel.children import StageChildren

    again = StageChildren(harness.kernel.deps, harness.persistence.get_run(parent), stage.id)
    assert [again.start("onboarding", {"name": n}, n, None) for n in ("ada", "bob")] == first
    assert len(harness.persistence.get_child_runs(parent_run_id=parent)) == 2


def test_cancelling_the_parent_cancels_its_unfinished_children(harness):
    parent = harness.start("onboard-all", {"names": ["ada", "bob"]})
    harness.drain(max_jobs=1)
    harness.kernel.dispatch(__import__("django_workflow_engine.kernel", fromlist=["CancelRun"]).CancelRun(parent))
    children = harness.persistence.get_child_runs(parent_run_id=parent)
    assert [c.status for c in children] == ["CANCELLED", "CANCELLED"]
    harness.clock.advance(timedelta(hours=2))
    harness.run_until_idle()
    assert harness.persistence.get_run(parent).status == "CANCELLED"


def test_bad_children_are_refused_and_nothing_is_started(harness):
    parent = harness.start("onboard-all", {"names": []})
    harness.drain(max_jobs=1)
    from django_workflow_engine.kernel.children import StageChildren

    stage = harness.persistence.get_stage(parent, "fan_out")
    children = StageChildren(harness.kernel.deps, harness.persistence.get_run(parent), stage.id)
    with pytest.raises(WorkflowNotFound):
        children.start("no-such-workflow", {}, "x", None)
    with pytest.raises(InvalidArgument, match="key"):
        children.start("onboarding", {"name": "a"}, "k" * 201, None)
    from django_workflow_engine.errors import InvalidInput

    with pytest.raises(InvalidInput):
        children.start("onboarding", {"nom": "a"}, "a", None)
    assert harness.persistence.get_child_runs(parent_run_id=parent) == []
