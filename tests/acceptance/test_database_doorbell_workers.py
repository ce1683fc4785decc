"""Real database-transport workers on PostgreSQL wake on the doorbell (``pg_notify``), not on their poll."""

from __future__ import annotations

import signal
import time

import pytest

from django_workflow_engine import engine
from django_workflow_engine.models import WorkflowJob, WorkflowRun, WorkflowStage

pytestmark = [pytest.mark.acceptance, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

# A poll far longer than the test may take: only the doorbell can wake these workers in time.
SLEEPY = {"TRANSPORT": "database", "WORKER_POLL_SECONDS": 120, "MAINTENANCE_INTERVAL_SECONDS": 120}


def _idle(worker_ids) -> bool:
    """Each worker has looked at the job table at least once (it registered) and none holds a job."""
    from django_workflow_engine.models import WorkflowWorker

    registered = set(WorkflowWorker.objects.filter(id__in=worker_ids).values_list("id", flat=True))
    return registered == set(worker_ids) and not WorkflowJob.objects.filter(status="RUNNING").exists()


def test_idle_workers_wake_on_each_start(processes, settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **SLEEPY}
    workers = [
        processes.start("runworker", "--worker-id", f"sleepy-{i}", engine_settings=SLEEPY, name=f"sleepy-{i}")
        for i in range(2)
    ]
    processes.wait_until(lambda: _idle(["sleepy-0", "sleepy-1"]), timeout=60, message="both workers up and idle")
    time.sleep(1)  # both are in their 120 s wait now

    began = time.monotonic()
    for n in range(3):
        # One at a time, each after the workers went idle again: every start must wake a sleeping worker.
        run = engine.start("triple", {"n": n})
        processes.wait_for_run(run, timeout=60, message=f"run {n} to finish")
        assert run.status == "COMPLETED", processes.logs()
    # Two at once: the second start finds one worker busy, and must wake the other.
    slow = [engine.start("triple", {"n": n, "sleep": 3}) for n in (3, 4)]
    processes.wait_until(
        lambda: WorkflowStage.objects.filter(run__in=slow, stage_id="ingest", status="RUNNING").count() == 2,
        timeout=60,
        message="both workers to run an ingest",
    )
    for run in slow:
        processes.wait_for_run(run, timeout=60)
    elapsed = time.monotonic() - began
    assert elapsed < 60, f"the runs took {elapsed:.0f} s: the workers slept through the doorbell"

    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(timeout=15) == 0, "a waiting worker did not stop promptly"
    assert WorkflowRun.objects.filter(status="COMPLETED").count() == 5
