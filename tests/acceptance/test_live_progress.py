"""Progress and logs of a running stage are visible while it runs (a real ``runworker``), on the run page too."""

from __future__ import annotations

import pytest
from django.urls import reverse

from django_workflow_engine import engine
from django_workflow_engine.models import WorkflowLog, WorkflowRun, WorkflowStage

from .conftest import wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DB = {"TRANSPORT": "database", "WORKER_POLL_SECONDS": 0.1, "HEARTBEAT_SECONDS": 0.3}


def test_a_running_stages_progress_and_logs_show_while_it_runs(processes, settings, admin_client):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **DB}
    processes.start("runworker", "--worker-id", "walker", engine_settings=DB, name="walker")
    run = engine.start("slow-walk", {"steps": 4, "pause": 1.0})

    def live() -> dict | None:
        stage = WorkflowStage.objects.filter(run_id=run.id, stage_id="walk").first()
        if stage is None or stage.status != "RUNNING":
            return None
        return (stage.metrics or {}).get("live_progress")

    wait_until(lambda: (live() or {}).get("message") == "step 2", timeout=30, message="step 2 while running")
    assert live()["progress"] == 50.0
    assert WorkflowStage.objects.get(run_id=run.id, stage_id="walk").status == "RUNNING"
    assert {"step 1 of 4", "step 2 of 4"} <= set(
        WorkflowLog.objects.filter(run_id=run.id).values_list("message", flat=True)
    )
    # The page shows the beat stored when it was rendered: read the stage before and after the page, and use a
    # page rendered while the stored progress did not move (a step lasts 1 s).
    url = reverse("admin:django_workflow_engine_workflowrun_change", args=[run.id])
    for _ in range(10):
        before = live()
        page = admin_client.get(url).content.decode()
        if before is not None and live() == before:
            break
    else:
        pytest.fail("the live progress kept moving while the run page rendered")
    shown = f"progress {before['progress']:.0f}% · {before['message']}"
    assert before["message"] in {"step 2", "step 3"}
    assert page.count("dwe-live-progress") == 1
    assert f'<span class="dwe-live-progress">{shown}</span>' in page

    wait_until(lambda: WorkflowRun.objects.get(pk=run.id).status == "COMPLETED", timeout=30, message="the walk")
    stage = WorkflowStage.objects.get(run_id=run.id, stage_id="walk")
    assert "live_progress" not in (stage.metrics or {})
    page = admin_client.get(reverse("admin:django_workflow_engine_workflowrun_change", args=[run.id])).content.decode()
    assert "dwe-live-progress" not in page
