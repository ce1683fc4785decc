"""Schedules and delayed starts with real processes: two ``runmaintenance`` loops fire an every-second
schedule at once, a ``runworker`` executes what they start."""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timedelta

import pytest

from django_workflow_engine import engine
from django_workflow_engine.models import WorkflowRun, WorkflowSchedule, WorkflowStage

from .conftest import wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FAST = {"TRANSPORT": "database", "WORKER_POLL_SECONDS": 0.1, "MAINTENANCE_INTERVAL_SECONDS": 0.2}


def test_two_maintenance_loops_fire_an_every_second_schedule_exactly_once_per_fire_time(processes, settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **FAST}
    schedule = WorkflowSchedule.objects.create(
        name="every-second", workflow_id="diamond", interval_seconds=1, input={"value": 1}, catchup="all"
    )
    for i in range(2):
        processes.start("runmaintenance", "--worker-id", f"m{i}", engine_settings=FAST, name=f"maintenance{i}")
    processes.start("runworker", "--worker-id", "w0", engine_settings=FAST, name="worker")
    time.sleep(12)
    WorkflowSchedule.objects.filter(pk=schedule.pk).update(enabled=False)
    time.sleep(0.5)  # a tick in flight finishes

    runs = list(schedule.runs())
    fire_times = sorted(r.metadata["fire_time"] for r in runs)
    assert len(fire_times) >= 9, processes.logs()
    assert len(fire_times) == len(set(fire_times)), "a fire time was fired twice"
    seconds = [datetime.fromisoformat(t) for t in fire_times]
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(seconds)), fire_times
    assert all(proc.poll() is None for proc in processes.procs), processes.logs()  # both loops stayed up
    wait_until(
        lambda: WorkflowRun.objects.filter(metadata__schedule="every-second").exclude(status="COMPLETED").count() == 0,
        timeout=60,
        message="every scheduled run to complete",
    )


def test_a_delayed_start_runs_on_a_real_worker_when_due(processes, settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **FAST}
    processes.start("runworker", "--worker-id", "w0", engine_settings=FAST, name="worker")
    later = engine.start("diamond", {"value": 2}, delay=2.5)
    cancelled = engine.start("diamond", {"value": 3}, delay=2)
    assert engine.cancel(cancelled.id) is True
    due = WorkflowRun.objects.get(pk=later.id).scheduled_at
    time.sleep(1)
    assert not WorkflowStage.objects.filter(run_id=later.id, started_at__isnull=False).exists()
    wait_until(
        lambda: WorkflowRun.objects.get(pk=later.id).status == "COMPLETED", timeout=30, message="the delayed run"
    )
    first = WorkflowStage.objects.get(run_id=later.id, stage_id="a")
    assert first.started_at >= due
    assert WorkflowRun.objects.get(pk=cancelled.id).status == "CANCELLED"
    assert not WorkflowStage.objects.filter(run_id=cancelled.id, started_at__isnull=False).exists()


@pytest.mark.redis
@pytest.mark.postgres
def test_a_delayed_start_is_rung_by_rq_when_due_without_maintenance(processes, redis_conn, settings):
    """With the RQ transport the first stage's message is scheduled for its due second (RQ's scheduler in the
    worker): no maintenance process runs here to find the due job."""
    rq = {"TRANSPORT": "rq", "HEARTBEAT_SECONDS": 1, "LEASE_SECONDS": 5}
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **rq}
    processes.start("runworker", "--worker-id", "rq0", engine_settings=rq, name="rq-worker")
    run = engine.start("diamond", {"value": 4}, delay=3)
    due = WorkflowRun.objects.get(pk=run.id).scheduled_at
    wait_until(lambda: WorkflowRun.objects.get(pk=run.id).status == "COMPLETED", timeout=40, message="the RQ run")
    assert WorkflowStage.objects.get(run_id=run.id, stage_id="a").started_at >= due
