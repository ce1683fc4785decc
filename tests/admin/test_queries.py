"""Every page runs a small, fixed number of queries, however large the history (the count is pinned)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from django_workflow_engine.models import WorkflowRun

from .factories import seed_runs

pytestmark = pytest.mark.django_db

APP = "django_workflow_engine"


def url(name: str, *args) -> str:
    return reverse(f"admin:{APP}_{name}", args=args)


def queries(client, path: str, data=None, method: str = "get") -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = getattr(client, method)(path, data or {})
        assert response.status_code == 200, (path, response.status_code)
        if hasattr(response, "render") and not response.is_rendered:
            response.render()
    return len(ctx.captured_queries)


# Pinned budgets: a logged-in staff user (session + user + permissions: 4 queries) plus the page's own.
CHANGELISTS = {
    "workflowrun_changelist": ({}, 6),
    "workflowstage_changelist": ({}, 6),
    "workflowlog_changelist": ({}, 6),
    "workflowartifact_changelist": ({}, 7),
    "aicall_changelist": ({}, 8),
    "workflowjob_changelist": ({}, 6),
}
FILTERED = [
    ("workflowrun_changelist", {"status__exact": "COMPLETED", "workflow": "diamond", "q": "diamond"}),
    ("workflowstage_changelist", {"status__exact": "COMPLETED", "workflow": "diamond"}),
    ("workflowlog_changelist", {"level__exact": "INFO", "stage_id": "a", "q": "log line"}),
    ("aicall_changelist", {"model_id": "gpt-4o-mini", "call_type": "text"}),
]


@pytest.fixture
def viewer(login):
    return login("canceller")  # view permissions + cancel: the action form is built too


@pytest.mark.parametrize("name", list(CHANGELISTS))
def test_changelist_query_count_is_constant(viewer, name, django_assert_max_num_queries):
    params, budget = CHANGELISTS[name]
    seed_runs(30, ai_calls=3, logs=3)
    small = queries(viewer, url(name), params)
    seed_runs(270, ai_calls=3, logs=3)
    with django_assert_max_num_queries(budget):
        large = queries(viewer, url(name), params)
    assert large == small


@pytest.mark.parametrize(("name", "params"), FILTERED)
def test_filtered_changelist_query_count_is_constant(viewer, name, params, django_assert_max_num_queries):
    seed_runs(30, ai_calls=3, logs=3)
    small = queries(viewer, url(name), params)
    seed_runs(270, ai_calls=3, logs=3)
    with django_assert_max_num_queries(CHANGELISTS[name][1]):
        large = queries(viewer, url(name), params)
    assert large == small


RUN_PAGE_BUDGET = 15  # 12, plus the superseded stage records (history), the run's jobs (tries, retries), its child runs


def test_run_page_query_count_does_not_grow_with_the_run(viewer, django_assert_max_num_queries):
    small_run = seed_runs(1, ai_calls=2, logs=2, events=3)[0]
    big_run = seed_runs(1, ai_calls=300, logs=400, events=300)[0]
    seed_runs(100)
    small = queries(viewer, url("workflowrun_change", small_run.pk))
    with django_assert_max_num_queries(RUN_PAGE_BUDGET):
        large = queries(viewer, url("workflowrun_change", big_run.pk), {"level": "INFO", "logs_page": 3})
    assert large == small


COSTS_BUDGET = 6  # session, user, two permission reads, and two aggregate scans of the range


def test_costs_page_query_count_is_constant(viewer, django_assert_max_num_queries):
    seed_runs(20, ai_calls=3)
    small = queries(viewer, url("aicall_costs"))
    seed_runs(280, ai_calls=5)
    seed_runs(50, ai_calls=3, workflow_id="triple")
    with django_assert_max_num_queries(COSTS_BUDGET):
        large = queries(viewer, url("aicall_costs"))
    assert large == small
    with django_assert_max_num_queries(COSTS_BUDGET - 1):  # one aggregate scan
        queries(viewer, url("aicall_costs_csv"), {"table": "stage"})


def test_action_confirmation_pages_query_count_is_constant(viewer, login, django_assert_max_num_queries):
    few = seed_runs(3, status="RUNNING")
    many = seed_runs(200, status="RUNNING")
    data = {"action": "cancel_selected_runs", "index": 0}
    small = queries(viewer, url("workflowrun_changelist"), {**data, "_selected_action": [r.pk for r in few]}, "post")
    with django_assert_max_num_queries(8):
        large = queries(
            viewer, url("workflowrun_changelist"), {**data, "_selected_action": [r.pk for r in many]}, "post"
        )
    assert large == small
    rerunner = login("rerunner")
    done = seed_runs(150)
    data = {"action": "rerun_selected_runs", "index": 0, "_selected_action": [r.pk for r in done]}
    with django_assert_max_num_queries(8):
        queries(rerunner, url("workflowrun_changelist"), data, "post")


@pytest.mark.postgres
def test_unfiltered_lists_of_big_tables_use_the_planner_estimate(admin_client_, monkeypatch):
    from django_workflow_engine.admin.common import EstimatedCountPaginator

    seed_runs(60, status="FAILED")
    seed_runs(5)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE django_workflow_engine_workflowrun")  # the estimate: 65 (exact on a small table)
    WorkflowRun.objects.filter(pk__in=WorkflowRun.objects.filter(status="FAILED").values("pk")[:5]).delete()
    # The estimate is not refreshed by the deletes: a big table shows it, a filtered list and a small table the
    # exact count.
    monkeypatch.setattr(EstimatedCountPaginator, "ESTIMATE_ABOVE", 10)
    assert admin_client_.get(url("workflowrun_changelist")).context["cl"].result_count == 65
    response = admin_client_.get(url("workflowrun_changelist"), {"status__exact": "FAILED"})
    assert response.context["cl"].result_count == 55
    monkeypatch.setattr(EstimatedCountPaginator, "ESTIMATE_ABOVE", 100)
    assert admin_client_.get(url("workflowrun_changelist")).context["cl"].result_count == 60


def test_run_page_query_count_does_not_grow_with_attempts(viewer, django_assert_max_num_queries):
    from django_workflow_engine import engine
    from tests import flows

    flows.FAIL["b"] = "boom"
    run = engine.start("diamond", {"value": 1})
    engine.run_until_idle()
    once = queries(viewer, url("workflowrun_change", run.pk))
    for _ in range(4):
        engine.rerun_from(run.pk, "b")
        engine.run_until_idle()
    with django_assert_max_num_queries(RUN_PAGE_BUDGET + 1):  # a failed run reads its traceback
        many = queries(viewer, url("workflowrun_change", run.pk))
    assert many == once
    assert queries(viewer, url("workflowrun_change", run.pk), {"attempt": 2}) == once
