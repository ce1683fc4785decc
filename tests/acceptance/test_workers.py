"""Real worker and maintenance processes against the real database and Redis."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from django.db.models import Count

from django_workflow_engine import engine
from django_workflow_engine.hosts import serverless
from django_workflow_engine.models import WorkflowJob, WorkflowLog, WorkflowRun, WorkflowStage

from .conftest import wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

RQ = {"TRANSPORT": "rq", "HEARTBEAT_SECONDS": 1, "LEASE_SECONDS": 5, "MAINTENANCE_INTERVAL_SECONDS": 1}


def _all_finished(run_ids) -> bool:
    return (
        not WorkflowRun.objects.filter(id__in=run_ids).exclude(status__in=["COMPLETED", "FAILED", "CANCELLED"]).exists()
    )


def _assert_each_stage_executed_once(run_ids) -> None:
    counts = (
        WorkflowLog.objects.filter(run_id__in=run_ids, message__startswith="executed")
        .values("run_id", "message")
        .annotate(n=Count("id"))
    )
    assert len(counts) == 4 * len(run_ids)
    assert {c["n"] for c in counts} == {1}


def _start_slow_triple_and_wait_for_ingest(n: int) -> WorkflowRun:
    """Start a ``triple`` run whose stages take 3 s each; return once a worker is executing its first stage."""
    run = engine.start("triple", {"n": n, "sleep": 3})
    wait_until(
        lambda: WorkflowStage.objects.filter(run=run, stage_id="ingest", status="RUNNING").exists(),
        timeout=30,
        message="ingest to start",
    )
    return run


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.slow
def test_two_rq_workers_and_maintenance_complete_200_runs(processes, redis_conn, settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **RQ}
    for i in range(2):
        processes.start("runworker", "--worker-id", f"w{i}", engine_settings=RQ, name=f"worker{i}")
    processes.start("runmaintenance", "--interval", "1", engine_settings=RQ, name="maintenance")
    run_ids = [engine.start("triple", {"n": i}).id for i in range(200)]
    processes.wait_until(lambda: _all_finished(run_ids), timeout=240, message="200 runs to finish")
    assert set(WorkflowRun.objects.filter(id__in=run_ids).values_list("status", flat=True)) == {"COMPLETED"}
    assert WorkflowStage.objects.filter(run_id__in=run_ids, status="COMPLETED").count() == 800
    _assert_each_stage_executed_once(run_ids)
    run = WorkflowRun.objects.get(id=run_ids[7])
    assert run.output == {"sum": 14}


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.slow
def test_a_clean_rq_load_leaves_no_failed_rq_jobs_and_no_tracebacks(processes, redis_conn, settings):
    """Workers withdraw the messages of jobs they take without them; a withdrawal must never delete the data of
    a message another worker is finishing (RQ then fails it with ``InvalidJobOperation`` in
    ``handle_job_success``, and django-rq's dashboard shows failures for runs that succeeded)."""
    from rq.registry import FailedJobRegistry

    from django_workflow_engine.adapters.rq import get_queue

    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **RQ}
    workers = [
        processes.start("runworker", "--worker-id", f"w{i}", engine_settings=RQ, name=f"worker{i}") for i in range(2)
    ]
    processes.start("runmaintenance", "--interval", "1", engine_settings=RQ, name="maintenance")
    run_ids = [engine.start("triple", {"n": i}).id for i in range(300)]
    processes.wait_until(lambda: _all_finished(run_ids), timeout=300, message="300 runs to finish")
    failed_runs = list(WorkflowRun.objects.filter(id__in=run_ids).exclude(status="COMPLETED").values("id", "output"))
    assert failed_runs == []
    time.sleep(2)  # let the workers finish the messages they hold
    failed = FailedJobRegistry(queue=get_queue())
    assert failed.get_job_ids() == []
    for worker in workers:
        log = Path(worker.log_path).read_text()
        assert "Traceback" not in log, log[-3000:]
        assert "InvalidJobOperation" not in log


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.slow
def test_killed_worker_mid_stage_run_completes_after_lease_expires(processes, redis_conn, settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **RQ}
    victim = processes.start("runworker", "--worker-id", "victim", engine_settings=RQ, name="victim")
    time.sleep(2)
    run = _start_slow_triple_and_wait_for_ingest(3)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    processes.start("runworker", "--worker-id", "rescuer", engine_settings=RQ, name="rescuer")
    processes.start("runmaintenance", "--interval", "1", engine_settings=RQ, name="maintenance")
    processes.wait_until(lambda: _all_finished([run.id]), timeout=90, message="the run to finish")
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert WorkflowStage.objects.filter(run=run, status="COMPLETED").count() == 4
    job = run.jobs.get(stage_id="ingest")
    assert (job.status, job.attempt) == ("COMPLETED", 2)


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.slow
def test_redis_flushall_loses_messages_but_no_run(processes, redis_conn, settings):
    fast = {**RQ, "LEASE_SECONDS": 10, "REDELIVER_SECONDS": 2}
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **fast}
    # Messages are sent with no worker running, then Redis forgets them all.
    run_ids = [engine.start("triple", {"n": i}).id for i in range(20)]
    redis_conn.flushall()
    processes.start("runworker", "--worker-id", "w", engine_settings=fast, name="worker")
    processes.start("runmaintenance", "--interval", "1", engine_settings=fast, name="maintenance")
    processes.wait_until(lambda: _all_finished(run_ids), timeout=120, message="runs to finish after FLUSHALL")
    assert set(WorkflowRun.objects.filter(id__in=run_ids).values_list("status", flat=True)) == {"COMPLETED"}
    _assert_each_stage_executed_once(run_ids)


@pytest.mark.slow
def test_sigterm_lets_the_current_stage_finish(processes, settings):
    db = {"TRANSPORT": "database", "WORKER_POLL_SECONDS": 0.2}
    worker = processes.start("runworker", "--worker-id", "busy", engine_settings=db, name="busy")
    run = _start_slow_triple_and_wait_for_ingest(1)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, processes.logs()
    stage = WorkflowStage.objects.get(run=run, stage_id="ingest")
    assert stage.status == "COMPLETED"
    assert run.jobs.get(stage_id="ingest").status == "COMPLETED"
    # the next group was enqueued but not started by the stopping worker
    assert not WorkflowStage.objects.filter(run=run, status="RUNNING").exists()


@pytest.mark.redis
@pytest.mark.postgres
def test_sigterm_to_an_rq_worker_ends_its_chain_of_continuations(processes, redis_conn, settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **RQ}
    worker = processes.start("runworker", "--worker-id", "busy-rq", engine_settings=RQ, name="busy-rq")
    time.sleep(2)
    run = _start_slow_triple_and_wait_for_ingest(1)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, processes.logs()
    assert WorkflowStage.objects.get(run=run, stage_id="ingest").status == "COMPLETED"
    # the next group went to the queue for other workers: no stage was started for the stopping worker
    assert set(run.jobs.exclude(stage_id="ingest").values_list("status", "worker_id")) == {("PENDING", None)}
    assert not WorkflowStage.objects.filter(run=run, status="RUNNING").exists()


@pytest.mark.redis
@pytest.mark.postgres
def test_rq_worker_continues_a_run_eagerly_with_half_the_messages(processes, redis_conn, settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **RQ}
    run_ids = [engine.start("triple", {"n": i}).id for i in range(5)]
    processes.start("runworker", "--worker-id", "solo", "--burst", engine_settings=RQ, name="solo")
    processes.wait_until(lambda: _all_finished(run_ids), timeout=60, message="5 runs to finish")
    jobs = WorkflowJob.objects.filter(run_id__in=run_ids)
    assert set(jobs.values_list("status", "attempt")) == {("COMPLETED", 1)}
    # ingest and one sibling were queued (2 messages a run); the other sibling and join were continuations
    assert jobs.count() == 20
    for run_id in run_ids:
        ingest = WorkflowStage.objects.get(run_id=run_id, stage_id="ingest")
        continued = WorkflowStage.objects.filter(run_id=run_id, started_at=ingest.completed_at)
        assert continued.count() == 1


def test_serverless_functions_drive_a_run_to_completion():
    run = engine.create("triple", {"n": 2})
    tick = serverless.run_maintenance_tick()
    assert tick.claimed == 1
    processed = 0
    for _ in range(10):
        result = serverless.process_available_jobs(max_jobs=1)
        processed += result.processed
        if result.processed == 0:
            break
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert processed == 4
    assert run.output == {"sum": 4}
    assert serverless.run_maintenance_tick().events_flushed > 0


def test_serverless_handle_job_by_message():
    run = engine.start("triple", {"n": 1})
    while True:
        job = run.jobs.filter(status="PENDING").first()
        if job is None:
            break
        assert serverless.handle_job({"job_id": job.id}).outcome == "completed"
    assert serverless.handle_job({"job_id": job.id if job else "missing"}).outcome == "skipped"
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    with pytest.raises(ValueError, match="job_id"):
        serverless.handle_job({})


def test_runworker_rejects_bad_arguments():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "django", "runworker", "--worker-id", "bad id!", "--settings", "tests.settings"],
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
        env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.dirname(__file__)))},
    )
    assert out.returncode != 0
    assert "--worker-id" in out.stderr


@pytest.mark.slow
def test_heartbeat_keeps_a_long_stage_leased(processes, settings):
    """A stage running longer than the lease is not re-delivered while its worker heartbeats."""
    short = {"TRANSPORT": "database", "WORKER_POLL_SECONDS": 0.2, "LEASE_SECONDS": 2, "HEARTBEAT_SECONDS": 0.5}
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **short}
    processes.start("runworker", "--worker-id", "slow", "--with-maintenance", engine_settings=short, name="slow")
    processes.start("runworker", "--worker-id", "idle", engine_settings=short, name="idle")
    run = engine.start("triple", {"n": 5, "sleep": 6})
    processes.wait_until(lambda: _all_finished([run.id]), timeout=60, message="the long run")
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    job = run.jobs.get(stage_id="ingest")
    assert job.attempt == 1
    assert WorkflowLog.objects.filter(run=run, message="executed ingest").count() == 1


def test_runworker_with_maintenance_claims_pending_runs_in_burst_mode(processes):
    db = {"TRANSPORT": "database", "WORKER_POLL_SECONDS": 0.1, "MAINTENANCE_INTERVAL_SECONDS": 0.2}
    run = engine.create("triple", {"n": 4})  # PENDING: someone has to claim it
    worker = processes.start("runworker", "--burst", "--with-maintenance", engine_settings=db, name="burst")
    assert worker.wait(timeout=60) == 0, processes.logs()
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert run.output == {"sum": 8}


def test_startrun_inline_prints_progress_and_output(processes):
    proc = processes.start("startrun", "triple", "--input", '{"n": 3}', "--inline", name="startrun")
    assert proc.wait(timeout=60) == 0, processes.logs()
    out = processes.logs()
    assert "Started run" in out
    assert "4/4" in out
    assert '"sum": 6' in out


def test_startrun_rejects_bad_json_and_unknown_workflows(processes):
    bad = processes.start("startrun", "triple", "--input", "{not json", name="bad-json")
    assert bad.wait(timeout=60) != 0
    unknown = processes.start("startrun", "no-such-flow", "--input", "{}", name="unknown")
    assert unknown.wait(timeout=60) != 0
    logs = processes.logs()
    assert "not valid JSON" in logs
    assert "'no-such-flow' is not registered" in logs


def test_runmaintenance_once_reports_what_it_did(processes):
    engine.create("triple", {"n": 1})
    proc = processes.start("runmaintenance", "--once", name="once")
    assert proc.wait(timeout=60) == 0, processes.logs()
    assert "claimed=1" in processes.logs()


def test_run_and_wait_returns_the_finished_run(processes, settings):
    db = {"TRANSPORT": "database", "WORKER_POLL_SECONDS": 0.1}
    processes.start("runworker", "--worker-id", "w", engine_settings=db, name="w")
    run = engine.run_and_wait("triple", {"n": 2}, timeout=60)
    assert run.status == "COMPLETED"
    assert run.output == {"sum": 4}
    with pytest.raises(TimeoutError, match="still"):
        engine.run_and_wait("triple", {"n": 2, "sleep": 5}, timeout=0.5)


def _children(pid: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.append(int(entry))
    return children


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.redis
@pytest.mark.slow
def test_the_rq_scheduler_of_a_killed_worker_stops_and_releases_its_lock(processes, redis_conn):
    from django_workflow_engine.conf import settings as engine_settings

    worker = processes.start("runworker", "--worker-id", "doomed", engine_settings=RQ, name="doomed")
    lock = f"rq:scheduler-lock:{engine_settings.RQ_QUEUE}"
    wait_until(lambda: redis_conn.exists(lock) and _children(worker.pid), timeout=60, message="the RQ scheduler")
    (scheduler,) = _children(worker.pid)

    worker.send_signal(signal.SIGKILL)
    worker.wait()

    wait_until(lambda: not _alive(scheduler), timeout=15, message="the orphaned scheduler to stop")
    assert not redis_conn.exists(lock)  # released: a new worker's scheduler takes over at once
