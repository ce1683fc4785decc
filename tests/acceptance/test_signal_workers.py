"""A run resumed by a signal, on real worker processes: the worker executing the resumed stage is SIGKILLed;
the run still completes, the signal stage completed once and the work stage re-executed by another worker."""

from __future__ import annotations

import signal
import time

import pytest

from django_workflow_engine import engine
from django_workflow_engine.models import OutboxEvent, WorkflowRun, WorkflowSignal, WorkflowStage

from .conftest import wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

RQ = {"TRANSPORT": "rq", "HEARTBEAT_SECONDS": 1, "LEASE_SECONDS": 5, "MAINTENANCE_INTERVAL_SECONDS": 1}


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.slow
def test_a_worker_killed_right_after_a_resume_loses_nothing_and_completes_nothing_twice(
    processes, redis_conn, settings
):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **RQ}
    victim = processes.start("runworker", "--worker-id", "victim", engine_settings=RQ, name="victim")
    time.sleep(2)
    run = engine.start("signal-resume", {"n": 1})
    wait_until(
        lambda: WorkflowStage.objects.filter(run=run, stage_id="gate", status="SUSPENDED").exists(),
        timeout=30,
        message="the gate to wait",
    )
    started = time.monotonic()
    assert engine.signal(run.id, "go", {"go": True}).delivered
    # the doorbell wakes the worker at once (no maintenance process is running yet)
    wait_until(
        lambda: WorkflowStage.objects.filter(run=run, stage_id="work", status="RUNNING").exists(),
        timeout=10,
        message="the resumed stage to start",
    )
    assert time.monotonic() - started < 5
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    processes.start("runworker", "--worker-id", "rescuer", engine_settings=RQ, name="rescuer")
    processes.start("runmaintenance", "--interval", "1", engine_settings=RQ, name="maintenance")
    processes.wait_for_run(run, 90)
    assert run.status == "COMPLETED"
    assert run.jobs.get(stage_id="work").attempt == 2  # re-executed after the kill
    assert run.jobs.filter(stage_id="gate").count() == 1
    signal_row = WorkflowSignal.objects.get(run=run)
    assert signal_row.consumed_by.stage_id == "gate"
    events = list(OutboxEvent.objects.filter(run_id=run.pk).values_list("event_type", "payload"))
    assert sum(1 for t, _ in events if t == "stage:resumed") == 1
    assert sum(1 for t, p in events if t == "stage:completed" and p.get("stage_id") == "gate") == 1
    assert sum(1 for t, p in events if t == "stage:completed" and p.get("stage_id") == "work") == 1
    assert sum(1 for t, _ in events if t == "workflow:completed") == 1


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.parametrize("transport", ["rq", "database"])
def test_a_signal_resumes_an_async_batch_stage_through_the_doorbell_with_no_maintenance(
    processes, redis_conn, settings, transport
):
    """The stage polls hourly and no runmaintenance runs: only the woken job can complete these runs."""
    engine_settings = {**RQ, "TRANSPORT": transport, "WORKER_POLL_SECONDS": 0.2}
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **engine_settings}
    processes.start("runworker", "--worker-id", "w1", engine_settings=engine_settings, name="worker")
    early = engine.start("signal-batch", {"n": 1})
    assert not engine.signal(early.id, "rendered", {"url": "https://cdn/early"}).delivered  # kept: prep is running
    late = engine.start("signal-batch", {"n": 2})
    try:
        wait_until(
            lambda: WorkflowStage.objects.filter(run=late, stage_id="render", status="SUSPENDED").exists(),
            timeout=30,
            message="the render stage to wait",
        )
        assert engine.signal(late.id, "rendered", {"url": "https://cdn/late"}).delivered
        wait_until(
            lambda: (
                set(WorkflowRun.objects.filter(pk__in=[early.pk, late.pk]).values_list("status", flat=True))
                == {"COMPLETED"}
            ),
            timeout=30,
            message="both runs to complete",
        )
    except AssertionError:
        print(processes.logs())
        raise
    for run, url in ((early, "https://cdn/early"), (late, "https://cdn/late")):
        run.refresh_from_db()
        assert run.output == {"job": f"r-{run.input['n']}", "url": url}
        render = run.stages.get(stage_id="render")
        assert WorkflowSignal.objects.get(run=run).consumed_by == render
        assert run.jobs.get(stage_id="render").attempt == 1  # the poll used no attempt
        events = list(OutboxEvent.objects.filter(run_id=run.pk).values_list("event_type", flat=True))
        assert events.count("stage:resumed") == 1
        assert events.count("workflow:completed") == 1


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.slow
def test_a_worker_killed_while_polling_a_woken_stage_loses_nothing_and_completes_it_once(
    processes, redis_conn, settings
):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **RQ}
    victim = processes.start("runworker", "--worker-id", "victim", engine_settings=RQ, name="victim")
    run = engine.start("signal-batch-slow", {"n": 7})
    wait_until(
        lambda: WorkflowStage.objects.filter(run=run, stage_id="render", status="SUSPENDED").exists(),
        timeout=30,
        message="the render stage to wait",
    )
    assert engine.signal(run.id, "rendered", {"url": "https://cdn/7"}).delivered
    wait_until(
        lambda: run.jobs.filter(stage_id="render", status="RUNNING", worker_id="victim").exists(),
        timeout=10,
        message="the victim to poll the woken stage",
    )
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    processes.start("runworker", "--worker-id", "rescuer", engine_settings=RQ, name="rescuer")
    processes.start("runmaintenance", "--interval", "1", engine_settings=RQ, name="maintenance")
    processes.wait_for_run(run, 90)
    assert (run.status, run.output) == ("COMPLETED", {"job": "r-7", "url": "https://cdn/7"})
    job = run.jobs.get(stage_id="render")
    assert (job.status, job.attempt) == ("COMPLETED", 2)  # the killed poll, then the rescuer's
    assert run.logs.filter(message="polled").count() == 2
    events = list(OutboxEvent.objects.filter(run_id=run.pk).values_list("event_type", flat=True))
    assert events.count("stage:resumed") == 1
    assert events.count("stage:completed") == 1
    assert events.count("workflow:completed") == 1
