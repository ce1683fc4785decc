"""Hosts run on the kernel they are given; only a host given none runs on the package engine's."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from django_workflow_engine import Engine, engine
from django_workflow_engine.hosts import maintenance, serverless, wiring
from django_workflow_engine.hosts.worker import Worker
from django_workflow_engine.kernel.clock import FakeClock
from django_workflow_engine.models import WorkflowRun, WorkflowStage

pytestmark = pytest.mark.django_db(transaction=True)

# Far from the wall clock: a row stamped with it was written by the given kernel, not the package engine's.
AT = datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC)


def given() -> Engine:
    return Engine(clock=FakeClock(AT))


def test_serverless_entry_points_run_on_the_kernel_they_are_given():
    run = engine.start("triple", {"n": 1})
    ingest = run.jobs.get(stage_id="ingest")
    assert serverless.handle_job({"job_id": ingest.id}, kernel=given().kernel).outcome == "completed"
    stage = WorkflowStage.objects.get(run=run, stage_id="ingest")
    assert (stage.started_at, stage.completed_at) == (AT, AT)

    assert serverless.process_available_jobs(1, kernel=given().kernel).processed == 1
    assert WorkflowStage.objects.filter(run=run, completed_at=AT).count() == 2


def test_the_maintenance_tick_and_the_database_worker_run_on_the_kernel_they_are_given():
    run = engine.create("triple", {"n": 1})
    kernel = given().kernel
    assert maintenance.run_maintenance_tick(kernel).claimed == 1
    run.refresh_from_db()
    assert (run.status, run.started_at) == ("RUNNING", AT)

    Worker(burst=True, transport="database", kernel=kernel).run()
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert set(WorkflowStage.objects.filter(run=run).values_list("completed_at", flat=True)) == {AT}


def test_a_host_given_no_kernel_runs_on_the_package_engines(monkeypatch):
    run = engine.create("triple", {"n": 1})
    assert maintenance.run_maintenance_tick().claimed == 1
    assert WorkflowRun.objects.get(id=run.id).started_at != AT

    monkeypatch.setattr(wiring, "_source", None)  # as if the package engine had provided none
    with pytest.raises(RuntimeError, match="No kernel: pass kernel="):
        serverless.process_available_jobs(1)
