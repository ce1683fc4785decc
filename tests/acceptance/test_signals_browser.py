"""Answering a run that waits for a signal, in a real browser (Playwright, Debian's headless Chromium): an operator
fills the form built from the signal's model and the run completes; a staff user without the permission sees
no form, and a direct POST is refused."""

from __future__ import annotations

import os

import pytest
from django.contrib.auth.models import Permission, User

from django_workflow_engine import engine
from django_workflow_engine.models import WorkflowRun, WorkflowSignal
from django_workflow_engine.testing import registered_workflows
from tests.acceptance.test_admin_browser import PASSWORD, browser, page, shot  # noqa: F401  (fixtures)
from tests.admin.test_signals_admin import HOSTILE, flow

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _flow():
    with registered_workflows(flow):
        yield


def _user(name: str, *codenames: str) -> User:
    user = User.objects.create_user(name, f"{name}@example.com", PASSWORD, is_staff=True)
    perms = ["view_workflowrun", "view_workflowstage", *codenames]
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="django_workflow_engine", codename__in=perms)
    )
    return user


def _log_in(page, name: str) -> None:  # noqa: F811
    page.goto("/admin/login/")
    page.fill("#id_username", name)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")


def _waiting() -> WorkflowRun:
    run = engine.start("signal-admin", {"text": HOSTILE})
    engine.run_until_idle()
    return run


def test_an_operator_answers_the_form_and_the_run_completes(page):  # noqa: F811
    run = _waiting()
    _user("reviewer", "signal_workflowrun")
    _log_in(page, "reviewer")
    page.goto("/admin/django_workflow_engine/workflowrun/?waiting=input")
    page.click(f"text={run.short_id}")
    page.wait_for_selector("#dwe-signal-form")
    # prepare's hostile text is shown as text, not markup
    assert "<img src=x onerror=alert(1)>" in page.locator("#dwe-signal .dwe-prepared").inner_text()
    assert page.locator("#dwe-signal img, #dwe-signal script").count() == 0
    shot(page, "signal-01-form")
    page.check("#id_signal-approved")
    page.fill("#id_signal-summary", HOSTILE)
    page.fill("#id_signal-extra", '{"a": "not a number"}')  # refused by the model, shown on the field
    page.click("#dwe-signal-form input[type=submit]")
    page.wait_for_selector("#dwe-signal-form .errorlist")
    assert not WorkflowSignal.objects.exists()
    page.fill("#id_signal-extra", '{"a": 7}')
    page.fill("#id_signal-score", "5")
    page.select_option("#id_signal-tone", "angry")
    page.click("#dwe-signal-form input[type=submit]")
    page.wait_for_selector("text=Signal 'review' delivered")
    shot(page, "signal-02-delivered")
    assert page.locator("#dwe-signal-form").count() == 0
    engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert (run.output["summary"], run.output["tone"], run.output["score"]) == (HOSTILE, "angry", 5)
    assert run.output["extra"] == {"a": 7}
    assert WorkflowSignal.objects.get(run=run).actor == "reviewer"


def test_staff_without_the_permission_sees_no_form_and_a_post_is_refused(page):  # noqa: F811
    run = _waiting()
    _user("watcher")
    _log_in(page, "watcher")
    page.goto(f"/admin/django_workflow_engine/workflowrun/{run.pk}/change/")
    page.wait_for_selector("#dwe-signal")
    assert page.locator("#dwe-signal-form").count() == 0
    token = page.locator("input[name=csrfmiddlewaretoken]").count()  # the page has no form to take a token from
    cookie = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken") if token == 0 else None
    response = page.request.post(
        f"/admin/django_workflow_engine/workflowrun/{run.pk}/signal/",
        form={"signal-approved": "on", "signal-summary": "x", "csrfmiddlewaretoken": cookie or ""},
        headers={"X-CSRFToken": cookie or "", "Referer": page.url},
    )
    assert response.status == 403
    assert not WorkflowSignal.objects.exists()
