"""Cancel and rerun: confirmation pages, what they do, the messages, the admin log, CSRF."""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.messages import get_messages
from django.urls import reverse

from django_workflow_engine import engine
from django_workflow_engine.models import WorkflowRun, WorkflowStage
from tests import flows

from .factories import seed_runs

pytestmark = pytest.mark.django_db

APP = "django_workflow_engine"
CHANGELIST = reverse(f"admin:{APP}_workflowrun_changelist")


def url(name: str, *args) -> str:
    return reverse(f"admin:{APP}_{name}", args=args)


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def completed(value: int = 1) -> WorkflowRun:
    run = engine.start("diamond", {"value": value})
    engine.run_until_idle()
    run.refresh_from_db()
    return run


# -- cancel ------------------------------------------------------------------------------------------------


def test_bulk_cancel_confirms_then_cancels_and_skips_finished(admin_client_):
    r1, r2 = engine.start("diamond", {"value": 1}), engine.start("diamond", {"value": 2})
    done = seed_runs(1)[0]
    selected = [r1.pk, r2.pk, done.pk]
    page = admin_client_.post(CHANGELIST, {"action": "cancel_selected_runs", "_selected_action": selected})
    assert page.status_code == 200
    html = page.content.decode()
    assert "Are you sure you want to cancel the following runs?" in html
    assert "Skipped (already finished)" in html
    assert done.short_id in html
    assert html.count('name="_selected_action"') == 3
    for run in (r1, r2):
        run.refresh_from_db()
        assert run.status == "RUNNING"  # the confirmation page changed nothing

    response = admin_client_.post(
        CHANGELIST,
        {"action": "cancel_selected_runs", "_selected_action": selected, "post": "yes", "reason": "bad input"},
        follow=True,
    )
    assert "Cancelled 2 runs; skipped 1 run that had already finished." in messages_of(response)
    assert set(WorkflowRun.objects.filter(pk__in=[r1.pk, r2.pk]).values_list("status", flat=True)) == {"CANCELLED"}
    done.refresh_from_db()
    assert done.status == "COMPLETED"
    entries = LogEntry.objects.filter(action_flag=CHANGE).order_by("object_id")
    assert sorted(e.object_id for e in entries) == sorted([r1.pk, r2.pk])
    assert all(e.user_id == admin_client_.user.pk for e in entries)
    assert all("Cancelled the run (reason: bad input)." in e.get_change_message() for e in entries)


def test_bulk_cancel_of_only_finished_runs_offers_nothing_to_confirm(admin_client_):
    done = seed_runs(2)
    page = admin_client_.post(CHANGELIST, {"action": "cancel_selected_runs", "_selected_action": [r.pk for r in done]})
    html = page.content.decode()
    assert "None of the selected runs can be cancelled" in html
    assert 'name="post"' not in html


def test_cancel_button_on_the_run_page(admin_client_):
    run = engine.start("diamond", {"value": 1})
    page = admin_client_.get(url("workflowrun_cancel", run.pk))
    assert page.status_code == 200
    assert "Are you sure you want to cancel this run?" in page.content.decode()
    run.refresh_from_db()
    assert run.status == "RUNNING"
    response = admin_client_.post(url("workflowrun_cancel", run.pk), {"post": "yes"})
    assert response.status_code == 302
    assert response["Location"] == url("workflowrun_change", run.pk)
    run.refresh_from_db()
    assert run.status == "CANCELLED"
    entry = LogEntry.objects.get()
    assert (entry.object_id, entry.action_flag) == (run.pk, CHANGE)
    # Cancelling again is a no-op with a message, not an error.
    response = admin_client_.post(url("workflowrun_cancel", run.pk), {"post": "yes"}, follow=True)
    assert "Cancelled 0 runs; skipped 1 run that had already finished." in messages_of(response)
    assert LogEntry.objects.count() == 1


def test_cancel_get_without_post_flag_changes_nothing(admin_client_):
    run = engine.start("diamond", {"value": 1})
    admin_client_.post(url("workflowrun_cancel", run.pk), {})  # no post=yes: shows the confirmation again
    run.refresh_from_db()
    assert run.status == "RUNNING"


# -- rerun -------------------------------------------------------------------------------------------------


def test_bulk_rerun_lists_the_stages_then_reruns(admin_client_):
    a, b = completed(1), completed(2)
    running = engine.start("diamond", {"value": 3})
    selected = [a.pk, b.pk, running.pk]
    page = admin_client_.post(CHANGELIST, {"action": "rerun_selected_runs", "_selected_action": selected})
    assert page.status_code == 200
    html = page.content.decode()
    for stage_id in ("a", "b", "c", "d"):
        assert f'name="stage" value="{stage_id}"' in html
    assert "Group 2" in html
    assert "runs in parallel" in html
    assert "Skipped (only completed or failed runs can be rerun)" in html

    response = admin_client_.post(
        CHANGELIST,
        {"action": "rerun_selected_runs", "_selected_action": selected, "post": "yes", "stage": "c"},
        follow=True,
    )
    assert "Rerunning 2 runs from stage 'c'; skipped 1 run that were not completed or failed." in messages_of(response)
    flows.CALLS.clear()
    engine.run_until_idle()
    for run in (a, b):
        run.refresh_from_db()
        assert run.status == "COMPLETED"
        assert WorkflowStage.objects.get(run=run, stage_id="c").attempt == 1
    assert flows.CALLS["c"] >= 2
    assert LogEntry.objects.filter(object_id__in=[a.pk, b.pk], change_message__contains="Rerun from stage").count() == 2


def test_bulk_rerun_needs_one_workflow(admin_client_):
    runs = seed_runs(1) + seed_runs(1, workflow_id="triple")
    response = admin_client_.post(
        CHANGELIST, {"action": "rerun_selected_runs", "_selected_action": [r.pk for r in runs]}, follow=True
    )
    assert any("Select runs of one workflow" in m for m in messages_of(response))


def test_bulk_rerun_of_only_running_runs_is_refused(admin_client_):
    run = engine.start("diamond", {"value": 1})
    response = admin_client_.post(
        CHANGELIST, {"action": "rerun_selected_runs", "_selected_action": [run.pk]}, follow=True
    )
    assert any("only completed or failed runs can be rerun" in m for m in messages_of(response))


def test_rerun_without_a_stage_asks_again(admin_client_):
    run = completed()
    response = admin_client_.post(url("workflowrun_rerun", run.pk), {"post": "yes"})
    assert response.status_code == 200
    assert "Choose the stage to rerun from." in response.content.decode()
    response = admin_client_.post(url("workflowrun_rerun", run.pk), {"post": "yes", "stage": "zzz"})
    assert "Choose the stage to rerun from." in response.content.decode()
    assert LogEntry.objects.count() == 0


def test_rerun_button_on_a_failed_run(admin_client_):
    flows.FAIL["b"] = "upstream timeout"
    run = engine.start("diamond", {"value": 1})
    engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "FAILED"
    page = admin_client_.get(url("workflowrun_rerun", run.pk))
    html = page.content.decode()
    assert "Rerun run " + run.short_id in html
    assert "FAILED" in html  # each stage shows its current status
    flows.FAIL.clear()
    response = admin_client_.post(url("workflowrun_rerun", run.pk), {"post": "yes", "stage": "b"})
    assert response.status_code == 302
    engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert LogEntry.objects.get().get_change_message() == "Rerun from stage 'b'."


def test_rerun_of_a_running_run_from_its_page_is_refused_with_a_message(admin_client_):
    run = engine.start("diamond", {"value": 1})
    response = admin_client_.post(url("workflowrun_rerun", run.pk), {"post": "yes", "stage": "a"}, follow=True)
    assert any("only completed or failed runs can be rerun" in m for m in messages_of(response))
    run.refresh_from_db()
    assert run.status == "RUNNING"


def test_rerun_of_a_cancelled_run_is_skipped(admin_client_):
    run = engine.start("diamond", {"value": 1})
    engine.cancel(run.pk)
    response = admin_client_.post(
        CHANGELIST,
        {"action": "rerun_selected_runs", "_selected_action": [run.pk], "post": "yes", "stage": "a"},
        follow=True,
    )
    assert any("only completed or failed runs can be rerun" in m for m in messages_of(response))
    run.refresh_from_db()
    assert run.status == "CANCELLED"


# -- CSRF --------------------------------------------------------------------------------------------------


def _token(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


def test_actions_need_a_csrf_token(login):
    client = login("superuser", enforce_csrf=True)
    done = completed(2)
    run = engine.start("diamond", {"value": 1})
    assert client.post(url("workflowrun_cancel", run.pk), {"post": "yes"}).status_code == 403
    assert client.post(url("workflowrun_rerun", done.pk), {"post": "yes", "stage": "a"}).status_code == 403
    assert (
        client.post(
            CHANGELIST, {"action": "cancel_selected_runs", "_selected_action": [run.pk], "post": "yes"}
        ).status_code
        == 403
    )
    run.refresh_from_db()
    assert run.status == "RUNNING"
    assert LogEntry.objects.count() == 0

    token = _token(client.get(url("workflowrun_cancel", run.pk)).content.decode())
    response = client.post(url("workflowrun_cancel", run.pk), {"post": "yes", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == "CANCELLED"

    token = _token(client.get(url("workflowrun_rerun", done.pk)).content.decode())
    response = client.post(
        url("workflowrun_rerun", done.pk), {"post": "yes", "stage": "a", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    done.refresh_from_db()
    assert done.status == "RUNNING"
