"""The Workers page in a real browser: from the app index's health box to a gone worker's held jobs and their run."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from django_workflow_engine import engine
from django_workflow_engine.models import WorkflowJob, WorkflowWorker

from .test_admin_browser import _reset_flows, browser, log_in, page, shot  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]


def worker(worker_id: str, beat_ago: float, **fields) -> None:
    now = timezone.now()
    WorkflowWorker.objects.create(
        id=worker_id,
        host="box-1",
        pid=7,
        queues=["workflows"],
        transport="database",
        started_at=now - timedelta(hours=1),
        heartbeat_at=now - timedelta(seconds=beat_ago),
        **fields,
    )


def test_from_the_app_index_to_a_gone_workers_jobs(page):  # noqa: F811
    busy = engine.start("diamond", {"value": 1})
    lost = engine.start("diamond", {"value": 2})
    worker("box-1:10", 0, job_id="j", run_id=busy.id, workflow_id="diamond", stage_id="a", stages_done=3)
    worker("box-1:11", 3600)
    WorkflowJob.objects.filter(run=lost).update(
        worker_id="box-1:11", status="RUNNING", attempt=1, locked_at=timezone.now() - timedelta(hours=1)
    )
    log_in(page)
    page.goto("/admin/django_workflow_engine/")
    health = page.locator("#dwe-health")
    assert "Live workers 1" in " ".join(health.inner_text().split())
    shot(page, "workers-01-app-index")

    health.locator("text=Live workers").click()
    page.wait_for_selector("#result_list")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert "diamond · a of" in rows.first.inner_text()
    shot(page, "workers-02-alive")

    page.goto("/admin/django_workflow_engine/workflowworker/?state=gone")
    page.locator("#result_list").locator("text=box-1:11").click()
    held = page.locator("table.dwe-held")
    assert "still leased to it" in held.inner_text()
    shot(page, "workers-03-gone-worker")
    held.locator(f"a[title='{lost.id}']").click()
    page.wait_for_url(f"**/workflowrun/{lost.id}/change/")
