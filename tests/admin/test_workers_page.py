"""The Workers page (alive / stopped / gone, the job in hand, what became of a gone worker's jobs) and the
queue's depth and oldest due job on the app index."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from django_workflow_engine import engine
from django_workflow_engine.models import WorkflowJob, WorkflowWorker

pytestmark = pytest.mark.django_db

APP = "django_workflow_engine"


def make_worker(worker_id: str, *, beat_ago: float = 0, stopped: bool = False, **fields) -> WorkflowWorker:
    now = timezone.now()
    return WorkflowWorker.objects.create(
        id=worker_id,
        host="box-1",
        pid=4242,
        queues=["workflows"],
        transport="database",
        started_at=now - timedelta(hours=1),
        heartbeat_at=now - timedelta(seconds=beat_ago),
        stopped_at=now if stopped else None,
        **fields,
    )


def test_workers_list_shows_state_and_the_job_in_hand(admin_client_):
    run = engine.start("diamond", {"value": 1})
    make_worker("box-1:1", workflow_id="diamond", stage_id="a", run_id=run.id, job_id="j1", stages_done=7)
    make_worker("box-1:2", stopped=True)
    make_worker("box-1:3", beat_ago=3600)

    url = reverse(f"admin:{APP}_workflowworker_changelist")
    page = admin_client_.get(url).content.decode()
    assert page.count(">alive<") == 1
    assert page.count(">stopped<") == 1
    assert page.count(">gone<") == 1
    assert f'diamond · a of <a href="/admin/{APP}/workflowrun/{run.id}/change/"' in page
    gone = admin_client_.get(url + "?state=gone").content.decode()
    assert "box-1:3" in gone
    assert "box-1:1" not in gone
    assert "box-1:2" not in gone
    alive = admin_client_.get(url + "?state=alive").content.decode()
    assert "box-1:1" in alive
    assert "box-1:3" not in alive


def test_a_gone_workers_page_lists_the_jobs_it_held_and_their_fate(admin_client_):
    run = engine.start("diamond", {"value": 1})
    make_worker("box-1:9", beat_ago=3600)
    WorkflowJob.objects.filter(run=run).update(
        worker_id="box-1:9", status="RUNNING", attempt=1, locked_at=timezone.now() - timedelta(hours=1)
    )
    page = admin_client_.get(reverse(f"admin:{APP}_workflowworker_change", args=["box-1:9"])).content.decode()
    assert ">gone<" in page
    assert "still leased to it; re-delivered after the lease expires" in page

    WorkflowJob.objects.filter(run=run).update(status="PENDING")
    page = admin_client_.get(reverse(f"admin:{APP}_workflowworker_change", args=["box-1:9"])).content.decode()
    assert "waiting for another delivery (attempt 1 of" in page


def test_the_app_index_shows_live_workers_and_the_oldest_due_job(admin_client_):
    make_worker("box-1:1")
    make_worker("box-1:3", beat_ago=3600)
    run = engine.start("diamond", {"value": 1})
    WorkflowJob.objects.filter(run=run).update(available_at=timezone.now() - timedelta(seconds=90))
    page = admin_client_.get(reverse("admin:app_list", args=[APP])).content.decode()
    assert "Live workers</a></th><td>1</td>" in page
    assert "Jobs due now</a></th><td>1</td>" in page
    assert "waiting 90 s" in page


def test_the_workers_page_is_read_only(admin_client_):
    make_worker("box-1:1")
    assert admin_client_.get(reverse(f"admin:{APP}_workflowworker_add")).status_code == 403
    response = admin_client_.post(reverse(f"admin:{APP}_workflowworker_delete", args=["box-1:1"]), {"post": "yes"})
    assert response.status_code == 403
    assert WorkflowWorker.objects.filter(pk="box-1:1").exists()
