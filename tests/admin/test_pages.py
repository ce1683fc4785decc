"""Every admin page renders for a superuser and shows what it should."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from django_workflow_engine import engine
from django_workflow_engine.models import AICall, WorkflowArtifact, WorkflowLog, WorkflowRun, WorkflowStage
from tests import flows

from .factories import seed_runs

pytestmark = pytest.mark.django_db

APP = "django_workflow_engine"


def url(name: str, *args) -> str:
    return reverse(f"admin:{APP}_{name}", args=args)


@pytest.fixture
def finished_run():
    run = engine.start("diamond", {"value": 5})
    engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    return run


@pytest.fixture
def failed_run():
    flows.FAIL["b"] = "upstream timeout"
    run = engine.start("diamond", {"value": 1})
    engine.run_until_idle()
    flows.FAIL.clear()
    run.refresh_from_db()
    assert run.status == "FAILED"
    return run


def test_run_changelist_shows_columns(admin_client_, finished_run):
    response = admin_client_.get(url("workflowrun_changelist"))
    assert response.status_code == 200
    html = response.content.decode()
    assert finished_run.short_id in html
    assert "4/4 stages" in html
    assert "COMPLETED" in html
    assert "$0.2500" in html  # total_cost 0.25 from stage d's custom metrics
    assert finished_run.total_tokens == 30
    assert '<td class="field-tokens">30</td>' in html


def test_run_changelist_progress_of_a_failed_run(admin_client_):
    # Both parallel stages fail: whichever runs first fails the run, so only stage a is ever completed.
    flows.FAIL.update(b="upstream timeout", c="upstream timeout")
    try:
        run = engine.start("diamond", {"value": 1})
        engine.run_until_idle()
    finally:
        flows.FAIL.clear()
    run.refresh_from_db()
    assert run.status == "FAILED"
    assert list(run.stages.filter(status="COMPLETED").values_list("stage_id", flat=True)) == ["a"]
    html = admin_client_.get(url("workflowrun_changelist")).content.decode()
    assert '<td class="field-progress"><span style="white-space:nowrap">1/4 stages</span></td>' in html


def test_run_changelist_newest_first_and_filters(admin_client_):
    older = seed_runs(1, start=timezone.now() - timedelta(days=3))[0]
    newer = seed_runs(1, status="FAILED")[0]
    html = admin_client_.get(url("workflowrun_changelist")).content.decode()
    assert html.index(newer.short_id) < html.index(older.short_id)

    html = admin_client_.get(url("workflowrun_changelist") + "?status__exact=FAILED").content.decode()
    assert newer.short_id in html
    assert older.short_id not in html

    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    html = admin_client_.get(
        url("workflowrun_changelist"),
        {"created_at__gte": str(midnight), "created_at__lt": str(midnight + timedelta(days=1))},
    ).content.decode()
    assert newer.short_id in html
    assert older.short_id not in html

    html = admin_client_.get(url("workflowrun_changelist") + "?workflow=triple").content.decode()
    assert newer.short_id not in html
    html = admin_client_.get(url("workflowrun_changelist") + "?workflow=diamond").content.decode()
    assert newer.short_id in html


@pytest.mark.parametrize("term", ["full", "short", "workflow"])
def test_run_search_by_id_short_id_and_workflow(admin_client_, term):
    run, other = seed_runs(1)[0], seed_runs(1, workflow_id="triple")[0]
    q = {"full": run.pk, "short": run.short_id, "workflow": "diamond"}[term]
    html = admin_client_.get(url("workflowrun_changelist"), {"q": q}).content.decode()
    assert run.short_id in html
    assert other.short_id not in html


def test_run_page_sections(admin_client_, finished_run):
    response = admin_client_.get(url("workflowrun_change", finished_run.pk))
    assert response.status_code == 200
    html = response.content.decode()
    for section in ("dwe-timeline", "dwe-stages", "dwe-logs", "dwe-ai-calls", "dwe-events", "dwe-artifacts"):
        assert f'id="{section}"' in html
    assert "<svg" in html
    assert 'class="dwe-bar"' in html
    assert 'data-stage="b"' in html
    assert 'data-stage="c"' in html
    assert "stages in parallel" in html  # group 2 (b || c) is bracketed
    assert "&quot;value&quot;: 5" in html  # input as indented, escaped JSON
    assert "doubling" in html  # the run's log
    assert "workflow:completed" in html  # its events
    assert "summary" in html  # artifact (kept in blob storage, listed from stage d's output)
    assert 'http-equiv="refresh"' not in html  # a finished run does not refresh
    assert "Cancel run" not in html  # nothing to cancel
    assert "Rerun from stage" in html


def test_running_run_page_refreshes_itself(admin_client_):
    run = engine.start("diamond", {"value": 1})
    html = admin_client_.get(url("workflowrun_change", run.pk)).content.decode()
    assert '<meta http-equiv="refresh" content="5">' in html
    assert "Cancel run" in html
    assert "Rerun from stage" not in html


def test_run_page_log_level_filter_and_pagination(admin_client_):
    run = seed_runs(1, logs=130)[0]
    page = url("workflowrun_change", run.pk)
    html = admin_client_.get(page).content.decode()
    assert "page 1 of 3 (130 logs)" in html
    assert "log line 0 of run 0" in html
    assert "log line 60 of run 0" not in html
    html = admin_client_.get(page, {"logs_page": 2}).content.decode()
    assert "log line 60 of run 0" in html
    html = admin_client_.get(page, {"level": "ERROR"}).content.decode()
    assert "log line 2 of run 0" in html
    assert "log line 1 of run 0" not in html
    html = admin_client_.get(page, {"level": "<bogus>"}).content.decode()
    assert "page 1 of 3" in html


def test_run_page_ai_cost_per_model(admin_client_):
    run = seed_runs(1, ai_calls=3)[0]
    html = admin_client_.get(url("workflowrun_change", run.pk)).content.decode()
    assert "gpt-4o-mini" in html
    assert "claude-3-haiku" in html
    assert "(+1 unpriced)" in html  # unpriced-model: cost unknown, not zero


def test_unknown_run_redirects_with_a_message(admin_client_):
    response = admin_client_.get(url("workflowrun_change", "nope"), follow=True)
    assert "doesn\u2019t exist" in response.content.decode()


def test_suspended_wait_is_drawn(admin_client_):
    run = seed_runs(1, status="RUNNING")[0]
    stage = WorkflowStage.objects.get(run=run, stage_id="a")
    started = timezone.now() - timedelta(seconds=60)
    WorkflowStage.objects.filter(pk=stage.pk).update(
        status="SUSPENDED",
        started_at=started,
        completed_at=None,
        duration_ms=None,
        suspended_state={"batch": "x"},
        next_poll_at=timezone.now() + timedelta(minutes=5),
    )
    from django_workflow_engine.models import OutboxEvent

    OutboxEvent.objects.create(
        created_at=started,
        run_id=run.pk,
        sequence=99,
        event_type="stage:suspended",
        payload={"stage_id": "a"},
        causation_id="t",
        occurred_at=started + timedelta(seconds=2),
    )
    html = admin_client_.get(url("workflowrun_change", run.pk)).content.decode()
    assert 'class="dwe-wait"' in html
    assert "still waiting" in html
    assert "next poll" in html


@pytest.mark.parametrize("model", ["workflowstage", "workflowlog", "workflowartifact", "aicall"])
def test_other_changelists_and_detail_pages(admin_client_, finished_run, model):
    seed_runs(2)
    WorkflowArtifact.objects.create(run=finished_run, key="report", data={"pages": 3}, size=12)
    response = admin_client_.get(url(f"{model}_changelist"))
    assert response.status_code == 200
    obj = {
        "workflowstage": WorkflowStage,
        "workflowlog": WorkflowLog,
        "workflowartifact": WorkflowArtifact,
        "aicall": AICall,
    }[model].objects.first()
    response = admin_client_.get(url(f"{model}_change", obj.pk))
    assert response.status_code == 200
    # Read-only: no save buttons, no add link.
    html = response.content.decode()
    assert 'name="_save"' not in html
    assert url(f"{model}_add") not in admin_client_.get(url(f"{model}_changelist")).content.decode()


def test_log_filters_and_search(admin_client_):
    run, _other = seed_runs(2, logs=4)
    base = url("workflowlog_changelist")
    html = admin_client_.get(base, {"run": run.pk}).content.decode()
    assert "of run 0" in html
    assert "of run 1" not in html
    html = admin_client_.get(base, {"level__exact": "ERROR"}).content.decode()
    assert "log line 2 of run" in html
    assert "log line 1 of run" not in html
    html = admin_client_.get(base, {"stage_id": "a"}).content.decode()
    assert "log line 0 of run 0" in html
    html = admin_client_.get(base, {"stage_id": "b"}).content.decode()
    assert "log line 0 of run 0" not in html
    html = admin_client_.get(base, {"q": "line 3 of run 1"}).content.decode()
    assert "log line 3 of run 1" in html
    assert "log line 3 of run 0" not in html


def test_stage_changelist_filters(admin_client_):
    run = seed_runs(1, status="FAILED")[0]
    seed_runs(1, workflow_id="triple")
    base = url("workflowstage_changelist")
    response = admin_client_.get(base, {"run": run.pk, "status__exact": "PENDING"})
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 3
    response = admin_client_.get(base, {"workflow": "triple"})
    assert {s.run.workflow_id for s in response.context["cl"].result_list} == {"triple"}


def test_ai_call_changelist_totals_follow_the_filter(admin_client_):
    seed_runs(3, ai_calls=3)  # per run: gpt (0.00625), claude (0.00625), unpriced
    base = url("aicall_changelist")
    response = admin_client_.get(base)
    html = response.content.decode()
    assert 'id="dwe-ai-totals"' in html
    totals = response.context["totals"]
    assert totals["calls"] == "9"
    assert totals["cost"] == "$0.0375"
    assert totals["unpriced"] == 3
    assert url("aicall_costs") in html  # the cost report is linked from here
    totals = admin_client_.get(base, {"model_id": "gpt-4o-mini"}).context["totals"]
    assert (totals["calls"], totals["cost"], totals["unpriced"]) == ("3", "$0.0188", 0)
    totals = admin_client_.get(base, {"call_type": "object"}).context["totals"]
    assert totals["calls"] == "3"
    tomorrow = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    totals = admin_client_.get(base, {"created_at__gte": str(tomorrow)}).context["totals"]
    assert totals["calls"] == "0"


def test_costs_page(admin_client_):
    seed_runs(2, ai_calls=3)
    seed_runs(1, ai_calls=2, workflow_id="triple", start=timezone.now() - timedelta(days=3))
    seed_runs(1, ai_calls=2, start=timezone.now() - timedelta(days=90))  # outside the default 30 days
    response = admin_client_.get(url("aicall_costs"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'class="dwe-cost-chart"' in html
    assert html.count('class="dwe-day"') == 30
    for section in ("dwe-by-model", "dwe-by-workflow", "dwe-by-stage", "dwe-by-day"):
        assert f'id="{section}"' in html
    tables = {t["key"]: t for t in response.context["tables"]}
    assert [r["labels"] for r in tables["workflow"]["rows"]] == [["diamond"], ["triple"]]
    assert tables["workflow"]["rows"][0]["calls"] == "6"
    assert [r["labels"] for r in tables["stage"]["rows"]] == [["diamond", "a"], ["triple", "a"]]
    assert response.context["totals"]["calls"] == "8"
    assert response.context["totals"]["cost"] == "$0.0375"  # 6 priced calls x 0.00625
    assert response.context["totals"]["unpriced"] == 2
    # model and day rows are rolled up from one (model, day) query: both add up to the totals
    assert sum(int(r["calls"]) for r in tables["model"]["rows"]) == 8
    assert [(r["labels"], r["calls"]) for r in tables["day"]["rows"]] == [
        ([str(timezone.localdate())], "6"),
        ([str(timezone.localdate() - timedelta(days=3))], "2"),
    ]

    today = timezone.localdate()
    response = admin_client_.get(url("aicall_costs"), {"start": today - timedelta(days=120), "end": today})
    assert response.context["totals"]["calls"] == "10"
    assert response.content.decode().count('class="dwe-day"') == 121


def test_costs_page_rejects_a_backwards_range(admin_client_):
    today = timezone.localdate()
    response = admin_client_.get(url("aicall_costs"), {"start": today, "end": today - timedelta(days=2)})
    assert response.status_code == 200
    assert "must not be after" in response.content.decode()


def test_costs_csv_export(admin_client_):
    seed_runs(2, ai_calls=3)
    today = timezone.localdate()
    for table, header in [("model", "model"), ("workflow", "workflow"), ("stage", "workflow"), ("day", "day")]:
        response = admin_client_.get(url("aicall_costs_csv"), {"table": table, "start": today, "end": today})
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/csv")
        assert "attachment" in response["Content-Disposition"]
        rows = list(csv.reader(io.StringIO(response.content.decode())))
        assert rows[0][0] == header
        assert rows[0][-5:] == ["calls", "input_tokens", "output_tokens", "cost", "unpriced_calls"]
    rows = list(
        csv.reader(io.StringIO(admin_client_.get(url("aicall_costs_csv"), {"table": "model"}).content.decode()))
    )
    assert {r[0]: r[-2] for r in rows[1:]} == {
        "gpt-4o-mini": "0.0125",
        "claude-3-haiku": "0.0125",
        "unpriced-model": "",
    }
    assert admin_client_.get(url("aicall_costs_csv"), {"table": "nope"}).status_code == 400


def test_csv_neutralizes_formulas(admin_client_):
    run = seed_runs(1, ai_calls=1)[0]
    AICall.objects.filter(run=run).update(model_id="=HYPERLINK(1)")
    rows = list(
        csv.reader(io.StringIO(admin_client_.get(url("aicall_costs_csv"), {"table": "model"}).content.decode()))
    )
    assert rows[1][0] == "'=HYPERLINK(1)"


def test_app_index_links_the_cost_report(admin_client_):
    html = admin_client_.get(reverse("admin:app_list", args=[APP])).content.decode()
    assert url("aicall_costs") in html


def test_history_shows_admin_actions(admin_client_, finished_run):
    response = admin_client_.get(url("workflowrun_history", finished_run.pk))
    assert response.status_code == 200


def test_nothing_can_be_added_changed_or_deleted(admin_client_, finished_run):
    assert admin_client_.get(url("workflowrun_add")).status_code == 403
    assert admin_client_.get(url("workflowrun_delete", finished_run.pk)).status_code == 403
    response = admin_client_.post(url("workflowrun_change", finished_run.pk), {"status": "FAILED"})
    assert response.status_code == 200  # the read-only page; the POST changed nothing
    finished_run.refresh_from_db()
    assert finished_run.status == "COMPLETED"
    actions = [
        a for a, _ in admin_client_.get(url("workflowrun_changelist")).context["action_form"].fields["action"].choices
    ]
    assert "delete_selected" not in actions
    assert WorkflowRun.objects.count() == 1


def test_costs_page_keeps_the_spend_of_deleted_runs(admin_client_):
    runs = seed_runs(2, ai_calls=3)
    runs[0].delete()  # its calls stay in the ledger, unlinked
    tables = {t["key"]: t for t in admin_client_.get(url("aicall_costs")).context["tables"]}
    assert [(r["labels"], r["calls"]) for r in tables["workflow"]["rows"]] == [(["diamond"], "6")]
    assert [(r["labels"], r["calls"]) for r in tables["stage"]["rows"]] == [(["diamond", "a"], "6")]
