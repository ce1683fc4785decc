"""Child runs through the engine on the ORM (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from django_workflow_engine import engine
from django_workflow_engine.models import WorkflowRun

pytestmark = pytest.mark.django_db


def test_children_run_and_the_parent_completes_with_them():
    parent = engine.start("onboard-all", {"names": ["ada", "bob"], "fail": "bob"})
    engine.run_until_idle()
    parent.refresh_from_db()
    assert parent.status == "COMPLETED"
    children = WorkflowRun.objects.filter(parent_run_id=parent.id).order_by("created_at")
    assert [(c.child_key, c.status) for c in children] == [("ada", "COMPLETED"), ("bob", "FAILED")]
    stage = parent.stages.get(stage_id="fan_out")
    assert {c.parent_stage_id for c in children} == {stage.id}
    assert stage.output_data["value"]["done"] == {"ada": {"welcomed": "ada"}}


def test_cancelling_the_parent_cancels_its_children():
    parent = engine.start("onboard-all", {"names": ["ada", "bob"]})
    from django_workflow_engine.hosts.drain import drain

    drain(engine.kernel, max_jobs=1)  # only the parent stage: the children are started, not run
    assert WorkflowRun.objects.filter(parent_run_id=parent.id, status="RUNNING").count() == 2
    engine.cancel(parent.id)
    assert set(WorkflowRun.objects.filter(parent_run_id=parent.id).values_list("status", flat=True)) == {"CANCELLED"}
