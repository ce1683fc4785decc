"""A 1,000-item map on two real ``runworker`` processes, one of them SIGKILLed halfway: every item completes
once, the one the killed worker was executing is executed again (its lease expired), none twice otherwise."""

from __future__ import annotations

import collections
import signal
import time

import pytest

from django_workflow_engine import engine
from django_workflow_engine.models import OutboxEvent, WorkflowJob, WorkflowStage

from .conftest import wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

DB = {
    "TRANSPORT": "database",
    "WORKER_POLL_SECONDS": 0.1,
    "HEARTBEAT_SECONDS": 1,
    "LEASE_SECONDS": 3,
    "MAINTENANCE_INTERVAL_SECONDS": 0.5,
}
ITEMS = 1000


@pytest.mark.postgres
@pytest.mark.slow
def test_a_thousand_item_map_completes_each_item_once_despite_a_killed_worker(processes, settings, tmp_path):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **DB}
    victim = processes.start("runworker", "--worker-id", "victim", engine_settings=DB, name="victim")
    processes.start("runworker", "--worker-id", "survivor", engine_settings=DB, name="survivor")
    processes.start("runmaintenance", "--interval", "0.5", engine_settings=DB, name="maintenance")
    run = engine.start("map-squares-slow", {"n": ITEMS})
    items = WorkflowStage.objects.filter(run=run, item_index__isnull=False)
    wait_until(
        lambda: items.filter(status="COMPLETED").count() >= ITEMS // 3,
        timeout=60,
        message="a third of the items to complete",
    )
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = time.monotonic()
    processes.wait_for_run(run, 90, "the map to finish")
    assert run.status == "COMPLETED", run.output
    assert run.output == [i * i for i in range(ITEMS)]  # every output, in item order
    assert items.count() == ITEMS
    assert set(items.values_list("status", flat=True)) == {"COMPLETED"}
    completed = collections.Counter(
        p["stage_id"]
        for t, p in OutboxEvent.objects.filter(run_id=run.pk).values_list("event_type", "payload")
        if t == "stage:completed"
    )
    assert all(completed[f"slow_square[{i}]"] == 1 for i in range(ITEMS))  # each item completed once
    executions = collections.Counter(
        int(line.split()[0]) for line in (tmp_path / "map-executions.log").read_text().splitlines()
    )
    assert set(executions) == set(range(ITEMS))
    again = {i for i, n in executions.items() if n > 1}
    # Only what the killed worker had in hand ran twice: one item (its stage code finished, its outcome not
    # written), re-delivered once its lease expired; every other item exactly once.
    assert len(again) <= 1
    assert all(executions[i] == 2 for i in again)
    attempts = dict(WorkflowJob.objects.filter(run_id=run.id).values_list("stage_id", "attempt"))
    assert {i for i in range(ITEMS) if attempts[f"slow_square[{i}]"] > 1} >= again
    assert time.monotonic() - killed_at < 90
    assert all(proc.poll() is None for proc in processes.procs[1:]), processes.logs()
