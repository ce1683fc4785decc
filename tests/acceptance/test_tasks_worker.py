"""Django tasks on real ``runworker`` processes (RQ transport, real Redis and PostgreSQL)."""

from __future__ import annotations

import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from django_workflow_engine.models import WorkflowRun
from django_workflow_engine.tasks.compat import TaskResultStatus
from tests.tasks import jobs

from .conftest import wait_until

pytestmark = [
    pytest.mark.acceptance,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

RQ = {"TRANSPORT": "rq", "HEARTBEAT_SECONDS": 1, "LEASE_SECONDS": 5, "MAINTENANCE_INTERVAL_SECONDS": 1}


@pytest.fixture
def task_dir(tmp_path: Path, monkeypatch) -> Path:
    folder = tmp_path / "tasks"
    folder.mkdir()
    monkeypatch.setenv(jobs.COUNTER_DIR, str(folder))
    return folder


def _started(task_dir: Path) -> list[str]:
    path = task_dir / "started"
    return path.read_text().split() if path.exists() else []


def test_sigkilled_worker_mid_task_the_task_completes_once(processes, redis_conn, settings, task_dir):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **RQ}
    env = {jobs.COUNTER_DIR: str(task_dir)}
    victim = processes.start("runworker", "--worker-id", "victim", engine_settings=RQ, name="victim", env=env)
    result = jobs.slow_once.enqueue(4)
    try:
        wait_until(lambda: _started(task_dir) == ["1"], timeout=30, message="the task to start")
        assert jobs.slow_once.get_result(result.id).status == TaskResultStatus.RUNNING
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        processes.start("runworker", "--worker-id", "rescuer", engine_settings=RQ, name="rescuer", env=env)
        processes.start("runmaintenance", "--interval", "1", engine_settings=RQ, name="maintenance", env=env)
        wait_until(lambda: jobs.slow_once.get_result(result.id).is_finished, timeout=90, message="the task to finish")
    except AssertionError:
        print(processes.logs())
        raise
    time.sleep(2)  # a duplicate execution would have started by now
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 2  # the second execution's count: the killed one never finished
    assert result.worker_ids == ["victim", "rescuer"]
    assert _started(task_dir) == ["1", "2"]
    run = WorkflowRun.objects.get(pk=result.id)
    assert run.status == "COMPLETED"
    assert list(run.stages.values_list("status", flat=True)) == ["COMPLETED"]
    job = run.jobs.get()
    assert (job.status, job.attempt) == ("COMPLETED", 2)


def test_a_deferred_task_runs_when_due_on_the_doorbell(processes, redis_conn, settings, task_dir):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **RQ}
    processes.start("runworker", "--worker-id", "w", engine_settings=RQ, name="worker")
    time.sleep(1)
    due = timezone.now() + timedelta(seconds=3)
    result = jobs.add.using(run_after=due).enqueue(20, 1)
    time.sleep(1)
    assert jobs.add.get_result(result.id).status == TaskResultStatus.READY
    try:
        # No maintenance process runs: the message scheduled for the due time is what starts it.
        wait_until(lambda: jobs.add.get_result(result.id).is_finished, timeout=30, message="the deferred task")
    except AssertionError:
        print(processes.logs())
        raise
    result.refresh()
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 21)
    assert result.started_at >= due
