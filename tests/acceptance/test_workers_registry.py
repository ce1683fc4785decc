"""The workers registry with real ``runworker`` processes: they appear, show the job in hand, and go (a clean stop,
a SIGKILL); ``manage.py workerstatus`` turns non-zero when no live worker serves the queue or a due job waits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from django_workflow_engine import engine
from django_workflow_engine.models import WorkflowJob, WorkflowRun, WorkflowWorker
from django_workflow_engine.ops.workers import check_health, held_jobs

from .conftest import ROOT, database_url, wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DB = {"TRANSPORT": "database", "WORKER_POLL_SECONDS": 0.1, "HEARTBEAT_SECONDS": 0.4, "CONTINUE_IN_WORKER": True}


def workerstatus(*args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "DWE_ENGINE_SETTINGS": '{"HEARTBEAT_SECONDS": 0.4}',
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "django", "workerstatus", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


def row(worker_id: str) -> WorkflowWorker | None:
    return WorkflowWorker.objects.filter(pk=worker_id).first()


def test_workers_register_beat_show_their_job_and_go(processes, settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **DB}
    status = workerstatus()
    assert status.returncode == 1, status
    assert "no live worker serves queue 'workflows'" in status.stderr

    worker = processes.start("runworker", "--worker-id", "wa", engine_settings=DB, name="wa")
    wait_until(lambda: check_health(["workflows"], None).ok, timeout=30, message="worker wa alive")
    w = row("wa")
    assert (w.pid, w.transport, w.stopped_at, w.job_id) == (worker.pid, "database", None, None)
    first_beat = w.heartbeat_at
    wait_until(lambda: row("wa").heartbeat_at > first_beat, timeout=5, message="an idle beat")
    status = workerstatus("--json")
    assert status.returncode == 0, status
    assert '"id": "wa"' in status.stdout

    run = engine.start("triple", {"n": 1, "sleep": 1.5})
    wait_until(lambda: row("wa").stage_id == "ingest", timeout=10, message="the job in hand at a beat")
    assert row("wa").run_id == run.id
    wait_until(
        lambda: WorkflowRun.objects.get(pk=run.id).status == "COMPLETED", timeout=30, message="the run to complete"
    )
    wait_until(lambda: row("wa").stages_done == 4 and row("wa").job_id is None, timeout=5, message="4 stages done")

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    assert row("wa").stopped_at is not None
    assert workerstatus().returncode == 1


def test_a_killed_worker_goes_and_its_job_is_shown(processes, settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **DB}
    run = engine.start("triple", {"n": 1, "sleep": 3})
    wait_until(lambda: WorkflowJob.objects.filter(run_id=run.id).exists(), timeout=10, message="a due job")
    wait_until(lambda: check_health([], 0.5).problems, timeout=5, message="the due job to age")
    status = workerstatus("--max-due-age", "1s")
    assert status.returncode == 1
    assert "the oldest due job has waited" in status.stderr
    assert workerstatus("--max-due-age", "soon").returncode == 2

    worker = processes.start("runworker", "--worker-id", "wk", engine_settings=DB, name="wk")
    wait_until(lambda: getattr(row("wk"), "stage_id", None) == "ingest", timeout=30, message="wk holds ingest")
    assert check_health(["workflows"], 60).ok
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    wait_until(lambda: not check_health(["workflows"], None).ok, timeout=5, message="wk counted gone")
    gone = row("wk")
    assert gone.stopped_at is None  # it never said goodbye; its beats stopped
    held = held_jobs("wk")
    assert [(j.stage_id, j.status) for j in held] == [("ingest", "RUNNING")]
