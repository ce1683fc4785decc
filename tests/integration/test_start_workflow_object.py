"""``engine.start``, ``create`` and ``start_many`` take the registered ``Workflow`` object as well as its id."""

from __future__ import annotations

import pytest

from django_workflow_engine import WorkflowBuilder, WorkflowEngineError, WorkflowNotFound, define_stage, engine
from django_workflow_engine.models import WorkflowRun
from tests.flows import triple

pytestmark = pytest.mark.django_db(transaction=True)


@define_stage()
def echo(ctx):
    return {"ok": True}


def test_start_create_and_start_many_take_the_registered_workflow():
    started = engine.start(triple, {"n": 2})
    created = engine.create(triple, {"n": 3})
    many = engine.start_many(triple, [{"n": 4}, {"n": 5}])
    assert {r.workflow_id for r in [started, created, *many]} == {"triple"}
    assert (started.status, created.status) == ("RUNNING", "PENDING")
    engine.run_until_idle()
    started.refresh_from_db()
    assert started.output == {"sum": 4}


def test_an_unregistered_workflow_object_is_refused_and_nothing_is_written():
    stray = WorkflowBuilder("stray", "Stray").pipe(echo).build()
    with pytest.raises(WorkflowNotFound, match="'stray' is not registered"):
        engine.start(stray, {})
    impostor = WorkflowBuilder("triple", "Another triple").pipe(echo).build()
    with pytest.raises(WorkflowEngineError, match="workflow: this Workflow object is not the one registered"):
        engine.start(impostor, {})
    with pytest.raises(WorkflowEngineError, match="workflow: this Workflow object is not the one registered"):
        engine.start_many(impostor, [{}])
    assert not WorkflowRun.objects.exists()
