"""Child runs under real processes: two ``runworker`` and one ``runmaintenance`` on PostgreSQL."""

from __future__ import annotations

import pytest

from django_workflow_engine import engine
from django_workflow_engine.models import WorkflowRun

from .conftest import wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

DB = {"TRANSPORT": "database", "WORKER_POLL_SECONDS": 0.1, "MAINTENANCE_INTERVAL_SECONDS": 0.5}


@pytest.mark.postgres
def test_parents_wait_for_their_children_across_workers(processes, settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **DB}
    for i in range(2):
        processes.start("runworker", "--worker-id", f"w{i}", engine_settings=DB, name=f"worker{i}")
    processes.start("runmaintenance", "--interval", "0.5", engine_settings=DB, name="maintenance")
    parents = [engine.start("onboard-all", {"names": [f"p{p}-c{c}" for c in range(5)]}).id for p in range(4)]
    wait_until(
        lambda: WorkflowRun.objects.filter(pk__in=parents, status="COMPLETED").count() == 4,
        timeout=60,
        message="4 parents to complete after their 20 children",
    )
    children = WorkflowRun.objects.filter(parent_run_id__in=parents)
    assert children.count() == 20  # one child per (stage, key): none doubled
    assert set(children.values_list("status", flat=True)) == {"COMPLETED"}
    for parent in WorkflowRun.objects.filter(pk__in=parents):
        assert parent.completed_at >= max(c.completed_at for c in children.filter(parent_run_id=parent.id))
    assert all(proc.poll() is None for proc in processes.procs), processes.logs()
