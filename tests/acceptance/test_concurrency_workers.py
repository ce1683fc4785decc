"""A concurrency limit held by three real ``runworker`` processes against PostgreSQL."""

from __future__ import annotations

import itertools

import pytest

from django_workflow_engine import engine
from django_workflow_engine.models import WorkflowRun

from .conftest import wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DB = {"TRANSPORT": "database", "WORKER_POLL_SECONDS": 0.1, "MAINTENANCE_INTERVAL_SECONDS": 0.5}


@pytest.mark.postgres
def test_thirty_runs_of_one_key_never_overlap_on_three_workers(processes, settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **DB}
    for i in range(3):
        processes.start("runworker", "--worker-id", f"w{i}", engine_settings=DB, name=f"worker{i}")
    ids = [engine.start("per-customer", {"customer": "acme", "n": i, "sleep": 0.05}).id for i in range(30)]
    assert WorkflowRun.objects.filter(pk__in=ids, status="PENDING").count() == 29  # waiting for the one slot

    wait_until(
        lambda: WorkflowRun.objects.filter(pk__in=ids, status="COMPLETED").count() == 30,
        timeout=90,
        message="30 limited runs to complete",
    )
    runs = sorted(WorkflowRun.objects.filter(pk__in=ids), key=lambda r: r.started_at)
    assert [r.id for r in runs] == ids, "runs did not start in FIFO order"
    for earlier, later in itertools.pairwise(runs):
        assert earlier.completed_at <= later.started_at, f"{earlier.id} and {later.id} overlapped"
    # Three workers polled the queue the whole time: each could have taken a waiting run's job.
    assert all(proc.poll() is None for proc in processes.procs), processes.logs()


@pytest.mark.postgres
def test_a_stage_limited_to_two_never_runs_three_times_at_once_on_three_workers(processes, settings):
    from django_workflow_engine.models import WorkflowStage

    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **DB}
    for i in range(3):
        processes.start("runworker", "--worker-id", f"w{i}", engine_settings=DB, name=f"worker{i}")
    ids = [engine.start("gpu-pair", {"customer": f"c{i}", "n": i, "sleep": 0.3}).id for i in range(12)]

    wait_until(
        lambda: WorkflowRun.objects.filter(pk__in=ids, status="COMPLETED").count() == 12,
        timeout=90,
        message="12 runs with a limited stage to complete",
    )
    renders = list(WorkflowStage.objects.filter(run_id__in=ids, stage_id="render").values("started_at", "completed_at"))
    assert len(renders) == 12
    edges = sorted([(r["started_at"], 1) for r in renders] + [(r["completed_at"], -1) for r in renders])
    most = running = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        running += step
        most = max(most, running)
    assert most <= 2, f"{most} renders ran at once"
    assert most == 2  # the limit was used, not serialised to one
    assert all(proc.poll() is None for proc in processes.procs), processes.logs()
