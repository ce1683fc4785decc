"""A stage past its timeout under a real ``runworker`` process: it fails with the timeout, and the same worker
goes on to complete other runs (both transports)."""

from __future__ import annotations

import pytest

from django_workflow_engine import engine
from django_workflow_engine.models import WorkflowJob, WorkflowRun, WorkflowStage

from .conftest import wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

DB = {"TRANSPORT": "database", "WORKER_POLL_SECONDS": 0.1}
RQ = {"TRANSPORT": "rq", "HEARTBEAT_SECONDS": 1, "LEASE_SECONDS": 5}


@pytest.mark.parametrize(
    "transport", [pytest.param(DB, id="database"), pytest.param(RQ, id="rq", marks=pytest.mark.redis)]
)
def test_a_stage_sleeping_an_hour_fails_at_its_timeout_and_the_worker_goes_on(processes, settings, transport):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **transport}
    worker = processes.start("runworker", "--worker-id", "only", engine_settings=transport, name="worker")
    stuck = engine.start("sleepy", {"seconds": 3600, "label": "stuck"})
    wait_until(
        lambda: WorkflowRun.objects.filter(pk=stuck.id, status="FAILED").exists(),
        timeout=45,
        message="the hour-long stage to fail at its 2 s timeout",
    )
    stage = WorkflowStage.objects.get(run=stuck, stage_id="nap")
    assert "Stage 'nap' timed out after 2 s" in stage.error_message
    assert stage.duration_ms < 20_000
    assert WorkflowJob.objects.get(run=stuck).status == "FAILED"  # max_attempts=1: failed for good

    others = [engine.start("sleepy", {"seconds": 0.05, "label": f"after-{i}"}).id for i in range(3)]
    wait_until(
        lambda: WorkflowRun.objects.filter(pk__in=others, status="COMPLETED").count() == 3,
        timeout=45,
        message="the same worker to complete three more runs",
    )
    assert worker.poll() is None, processes.logs()  # the only worker, still alive, ran them
