"""Lockstep batches with real worker processes on PostgreSQL: two workers take a backlog several jobs at a time,
one of them is killed mid-way, and every run still completes with its events in order."""

from __future__ import annotations

import signal
from collections import Counter

import pytest

from django_workflow_engine import engine
from django_workflow_engine.models import OutboxEvent, WorkflowJob, WorkflowRun

from .test_workers import _all_finished

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True), pytest.mark.postgres]

DATABASE = {"TRANSPORT": "database", "HEARTBEAT_SECONDS": 1, "LEASE_SECONDS": 5, "WORKER_POLL_SECONDS": 0.2}


@pytest.mark.slow
def test_workers_take_a_backlog_in_batches_and_a_killed_one_loses_no_run(processes, settings):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("batches are on by default on PostgreSQL only")
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **DATABASE}
    run_ids = [run.id for run in engine.start_many("triple", [{"n": i} for i in range(300)])]
    victim = processes.start("runworker", "--worker-id", "victim", engine_settings=DATABASE, name="victim")
    processes.start("runworker", "--worker-id", "steady", engine_settings=DATABASE, name="steady")
    processes.start("runmaintenance", "--interval", "1", engine_settings=DATABASE, name="maintenance")
    processes.wait_until(
        lambda: WorkflowRun.objects.filter(id__in=run_ids, status="COMPLETED").count() >= 60,
        timeout=60,
        message="the first runs to complete",
    )
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    processes.wait_until(lambda: _all_finished(run_ids), timeout=120, message="every run to finish")

    assert Counter(WorkflowRun.objects.filter(id__in=run_ids).values_list("status", flat=True)) == {"COMPLETED": 300}
    # Jobs claimed by one dequeue share its timestamp: several first stages were taken at once.
    claimed_together = Counter(
        WorkflowJob.objects.filter(run_id__in=run_ids, stage_id="ingest").values_list("started_at", flat=True)
    )
    assert max(claimed_together.values()) >= 2
    for run_id in run_ids[::10]:  # every event once, in order, whatever batch or worker recorded it
        sequences = list(
            OutboxEvent.objects.filter(run_id=run_id).order_by("sequence").values_list("sequence", flat=True)
        )
        assert sequences == list(range(1, len(sequences) + 1))
        types = list(
            OutboxEvent.objects.filter(run_id=run_id).order_by("sequence").values_list("event_type", flat=True)
        )
        assert types.count("stage:completed") == 4
        assert types[-1] == "workflow:completed"
