"""Who sees what: anonymous, staff without permissions, view-only, cancel, rerun, superuser."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from django_workflow_engine import engine

from .factories import seed_runs

pytestmark = pytest.mark.django_db

APP = "django_workflow_engine"


def url(name: str, *args) -> str:
    return reverse(f"admin:{APP}_{name}", args=args)


@pytest.fixture
def running_run():
    return engine.start("diamond", {"value": 1})


@pytest.fixture
def completed_run():
    return seed_runs(1)[0]


def pages(running_run, completed_run) -> list[str]:
    return [
        url("workflowrun_changelist"),
        url("workflowrun_change", completed_run.pk),
        url("workflowrun_history", completed_run.pk),
        url("workflowstage_changelist"),
        url("workflowlog_changelist"),
        url("workflowartifact_changelist"),
        url("aicall_changelist"),
        url("aicall_costs"),
        url("aicall_costs_csv"),
        url("workflowrun_cancel", running_run.pk),
        url("workflowrun_rerun", completed_run.pk),
    ]


def test_anonymous_is_sent_to_the_login_page(client, running_run, completed_run):
    for page in pages(running_run, completed_run):
        response = client.get(page)
        assert response.status_code == 302, page
        assert response["Location"].startswith(reverse("admin:login")), page
    response = client.post(url("workflowrun_cancel", running_run.pk), {"post": "yes"})
    assert response.status_code == 302
    running_run.refresh_from_db()
    assert running_run.status == "RUNNING"


def test_non_staff_user_is_sent_to_the_login_page(login, running_run, completed_run):
    from django.test import Client

    from .conftest import make_user

    user = make_user("outsider", "view_workflowrun", "cancel_workflowrun", staff=False)
    client = Client()
    client.force_login(user)
    response = client.get(url("workflowrun_changelist"))
    assert response.status_code == 302


def test_staff_without_permissions_is_refused_everywhere(login, running_run, completed_run):
    client = login("noperm")
    for page in pages(running_run, completed_run):
        assert client.get(page).status_code == 403, page
    assert client.post(url("workflowrun_cancel", running_run.pk), {"post": "yes"}).status_code == 403
    assert client.post(url("workflowrun_rerun", completed_run.pk), {"post": "yes", "stage": "a"}).status_code == 403
    running_run.refresh_from_db()
    assert running_run.status == "RUNNING"
    html = client.get(reverse("admin:index")).content.decode()
    assert "Workflow runs" not in html


def test_view_only_user_sees_pages_but_no_actions(login, running_run, completed_run):
    client = login("viewer")
    for page in pages(running_run, completed_run)[:-2]:
        assert client.get(page).status_code == 200, page
    changelist = client.get(url("workflowrun_changelist"))
    assert changelist.context["action_form"] is None
    assert "cancel_selected_runs" not in changelist.content.decode()
    html = client.get(url("workflowrun_change", running_run.pk)).content.decode()
    assert "Cancel run" not in html
    assert "Rerun from stage" not in html
    html = client.get(url("workflowrun_change", completed_run.pk)).content.decode()
    assert "Rerun from stage" not in html
    # The buttons' URLs and the actions refuse them.
    assert client.get(url("workflowrun_cancel", running_run.pk)).status_code == 403
    assert client.post(url("workflowrun_cancel", running_run.pk), {"post": "yes"}).status_code == 403
    assert client.get(url("workflowrun_rerun", completed_run.pk)).status_code == 403
    assert client.post(url("workflowrun_rerun", completed_run.pk), {"post": "yes", "stage": "a"}).status_code == 403
    for action in ("cancel_selected_runs", "rerun_selected_runs"):
        response = client.post(
            url("workflowrun_changelist"),
            {"action": action, "_selected_action": [running_run.pk, completed_run.pk], "post": "yes", "stage": "a"},
        )
        assert response.status_code == 200  # the list again: this user has no actions at all
    running_run.refresh_from_db()
    completed_run.refresh_from_db()
    assert (running_run.status, completed_run.status) == ("RUNNING", "COMPLETED")
    assert LogEntry.objects.count() == 0


def test_canceller_can_cancel_but_not_rerun(login, running_run, completed_run):
    client = login("canceller")
    changelist = client.get(url("workflowrun_changelist"))
    choices = [c for c, _ in changelist.context["action_form"].fields["action"].choices]
    assert "cancel_selected_runs" in choices
    assert "rerun_selected_runs" not in choices
    assert "Cancel run" in client.get(url("workflowrun_change", running_run.pk)).content.decode()
    assert "Rerun from stage" not in client.get(url("workflowrun_change", completed_run.pk)).content.decode()
    assert client.post(url("workflowrun_rerun", completed_run.pk), {"post": "yes", "stage": "a"}).status_code == 403
    response = client.post(
        url("workflowrun_changelist"),
        {"action": "rerun_selected_runs", "_selected_action": [completed_run.pk], "post": "yes", "stage": "a"},
        follow=True,
    )
    assert "No action selected." in response.content.decode()
    completed_run.refresh_from_db()
    assert completed_run.status == "COMPLETED"

    response = client.post(url("workflowrun_cancel", running_run.pk), {"post": "yes"})
    assert response.status_code == 302
    running_run.refresh_from_db()
    assert running_run.status == "CANCELLED"


def test_rerunner_can_rerun_but_not_cancel(login, running_run, completed_run):
    client = login("rerunner")
    changelist = client.get(url("workflowrun_changelist"))
    choices = [c for c, _ in changelist.context["action_form"].fields["action"].choices]
    assert "rerun_selected_runs" in choices
    assert "cancel_selected_runs" not in choices
    assert "Cancel run" not in client.get(url("workflowrun_change", running_run.pk)).content.decode()
    assert "Rerun from stage" in client.get(url("workflowrun_change", completed_run.pk)).content.decode()
    assert client.post(url("workflowrun_cancel", running_run.pk), {"post": "yes"}).status_code == 403
    response = client.post(
        url("workflowrun_changelist"),
        {"action": "cancel_selected_runs", "_selected_action": [running_run.pk], "post": "yes"},
        follow=True,
    )
    assert "No action selected." in response.content.decode()
    running_run.refresh_from_db()
    assert running_run.status == "RUNNING"

    real = engine.start("diamond", {"value": 2})
    engine.run_until_idle()
    response = client.post(url("workflowrun_rerun", real.pk), {"post": "yes", "stage": "c"})
    assert response.status_code == 302
    real.refresh_from_db()
    assert real.status == "RUNNING"


def test_cancel_permission_without_view_permission_is_refused(login, running_run):
    from django.test import Client

    from .conftest import make_user

    client = Client()
    client.force_login(make_user("blind", "cancel_workflowrun"))
    assert client.post(url("workflowrun_cancel", running_run.pk), {"post": "yes"}).status_code == 403
    running_run.refresh_from_db()
    assert running_run.status == "RUNNING"


def test_superuser_sees_both_actions_and_buttons(login, running_run, completed_run):
    client = login("superuser")
    choices = [c for c, _ in client.get(url("workflowrun_changelist")).context["action_form"].fields["action"].choices]
    assert {"cancel_selected_runs", "rerun_selected_runs"} <= set(choices)
    assert "Cancel run" in client.get(url("workflowrun_change", running_run.pk)).content.decode()
    assert "Rerun from stage" in client.get(url("workflowrun_change", completed_run.pk)).content.decode()
