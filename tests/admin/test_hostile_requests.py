"""Hostile request data: nothing from the request comes back as markup, NUL bytes are refused with 400, and the
run views refuse users without permission before they look a run up."""

from __future__ import annotations

import pytest
from django.urls import reverse

from django_workflow_engine import engine

from .factories import seed_runs

pytestmark = pytest.mark.django_db

APP = "django_workflow_engine"
XSS = "<script>alert(document.domain)</script>"
ATTR = '"><img src=x onerror=alert(1)>'


def url(name: str, *args) -> str:
    return reverse(f"admin:{APP}_{name}", args=args)


# -- the costs CSV export ------------------------------------------------------------------------------------


@pytest.mark.parametrize("table", [XSS, ATTR, "javascript:alert(1)", "nope"])
def test_costs_csv_refuses_an_unknown_table_as_plain_text_without_echoing_it(admin_client_, table):
    response = admin_client_.get(url("aicall_costs_csv"), {"table": table})
    assert response.status_code == 400
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["X-Content-Type-Options"] == "nosniff"
    body = response.content.decode()
    assert table not in body
    assert "<" not in body
    assert body == "Unknown table in ?table=: choose one of model, workflow, stage, day."


def test_costs_csv_ignores_hostile_dates(admin_client_):
    seed_runs(1, ai_calls=1)
    response = admin_client_.get(url("aicall_costs_csv"), {"table": "model", "start": XSS, "end": ATTR})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert XSS not in response["Content-Disposition"]
    assert "gpt-4o-mini" in response.content.decode()


# -- permission before lookup --------------------------------------------------------------------------------

MISSING = "0" * 32


@pytest.mark.parametrize(
    ("role", "view"),
    [
        ("noperm", "workflowrun_change"),
        ("noperm", "workflowrun_cancel"),
        ("noperm", "workflowrun_rerun"),
        ("viewer", "workflowrun_cancel"),
        ("viewer", "workflowrun_rerun"),
    ],
)
def test_run_views_answer_the_same_for_real_and_fake_ids_without_permission(login, role, view):
    real = seed_runs(1)[0] if view != "workflowrun_cancel" else engine.start("diamond", {"value": 1})
    client = login(role)
    answers = [client.get(url(view, run_id)).status_code for run_id in (real.pk, MISSING)]
    assert answers == [403, 403]
    assert client.post(url(view, MISSING), {"post": "yes", "stage": "a"}).status_code == 403


@pytest.mark.parametrize("view", ["workflowrun_change", "workflowrun_cancel", "workflowrun_rerun"])
def test_run_views_redirect_a_permitted_user_for_an_unknown_run(admin_client_, view):
    response = admin_client_.get(url(view, MISSING))
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")


def test_viewer_sees_an_existing_run_and_is_redirected_for_an_unknown_one(login):
    run = seed_runs(1)[0]
    client = login("viewer")
    assert client.get(url("workflowrun_change", run.pk)).status_code == 200
    assert client.get(url("workflowrun_change", MISSING)).status_code == 302


# -- NUL bytes -----------------------------------------------------------------------------------------------

NUL_PARAMS = {
    "workflowrun": ["status__exact", "workflow", "q", "created_at__gte"],
    "workflowstage": ["status__exact", "workflow", "run", "q"],
    "workflowlog": ["level__exact", "run", "stage_id", "q"],
    "workflowartifact": ["type__exact", "run", "q"],
    "aicall": ["model_id", "call_type", "run", "is_batch__exact", "q"],
}


@pytest.mark.parametrize(("model", "param"), [(m, p) for m, params in NUL_PARAMS.items() for p in params])
def test_a_nul_byte_in_a_changelist_parameter_is_a_bad_request(admin_client_, model, param):
    seed_runs(1, ai_calls=1, logs=1)
    response = admin_client_.get(url(f"{model}_changelist"), {param: "COMPLETED\x00x"})
    assert response.status_code == 400
    assert "\x00" not in response.content.decode()


def test_a_nul_byte_in_a_parameter_name_is_a_bad_request(admin_client_):
    assert admin_client_.get(url("workflowrun_changelist") + "?status%00=1").status_code == 400


@pytest.mark.parametrize(
    "view", ["workflowrun_change", "workflowrun_cancel", "workflowrun_rerun", "workflowrun_history"]
)
def test_a_nul_byte_in_a_run_id_is_a_bad_request(admin_client_, view):
    seed_runs(1)
    assert admin_client_.get(url(view, "abc\x00def")).status_code == 400


@pytest.mark.parametrize("model", ["workflowstage", "workflowlog", "workflowartifact", "aicall"])
def test_a_nul_byte_in_an_object_id_is_a_bad_request(admin_client_, model):
    assert admin_client_.get(url(f"{model}_change", "1\x00")).status_code == 400


def test_a_nul_byte_on_the_run_page_and_the_cost_report_is_a_bad_request(admin_client_):
    run = seed_runs(1, logs=3)[0]
    assert admin_client_.get(url("workflowrun_change", run.pk), {"logs_page": "1\x00"}).status_code == 400
    assert admin_client_.get(url("aicall_costs"), {"start": "2026-01-01\x00"}).status_code == 400
    assert admin_client_.get(url("aicall_costs_csv"), {"table": "day\x00"}).status_code == 400


def test_a_nul_byte_in_a_selected_run_of_an_action_is_a_bad_request(admin_client_):
    running = engine.start("diamond", {"value": 1})
    data = {"action": "cancel_selected_runs", "_selected_action": [running.pk, "x\x00"], "post": "yes"}
    assert admin_client_.post(url("workflowrun_changelist"), data).status_code == 400
    running.refresh_from_db()
    assert running.status != "CANCELLED"
