"""The schedule admin in a real browser (Playwright + Chromium): add with a bad cron expression (the error on the
field), fix and save, the next five fire times, "Run now", the schedule's runs; a delayed run shows scheduled."""

from __future__ import annotations

from datetime import timedelta

import pytest

from django_workflow_engine import engine
from django_workflow_engine.models import WorkflowRun, WorkflowSchedule

from .test_admin_browser import _reset_flows, browser, log_in, page, shot  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]


def test_add_validate_preview_run_now_and_runs(page):  # noqa: F811
    log_in(page)
    page.goto("/admin/django_workflow_engine/workflowschedule/add/")
    page.fill("#id_name", "nightly-digest")
    page.fill("#id_workflow_id", "diamond")
    page.fill("#id_cron", "0 25 * * *")
    page.fill("#id_timezone", "Europe/Berlin")
    page.fill("#id_input", '{"value": 5}')
    page.click("input[name=_continue]")
    error = page.wait_for_selector(".field-cron .errorlist")
    assert "is not a cron expression" in error.inner_text()
    shot(page, "schedule-01-bad-cron")
    assert not WorkflowSchedule.objects.exists()

    page.fill("#id_cron", "30 2 * * *")
    page.fill("#id_input", '{"value": "five"}')
    page.click("input[name=_continue]")
    page.wait_for_selector(".field-input .errorlist")
    assert not page.locator(".field-cron .errorlist").count()
    page.fill("#id_input", '{"value": 5}')
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist .success")
    preview = page.locator("ol.dwe-preview li")
    assert preview.count() == 5
    assert "02:30:00" in preview.first.inner_text()
    shot(page, "schedule-02-saved-preview")
    schedule = WorkflowSchedule.objects.get(name="nightly-digest")
    assert schedule.next_fire_at is not None

    page.goto("/admin/django_workflow_engine/workflowschedule/")
    page.check(f"input[name=_selected_action][value='{schedule.pk}']")
    page.select_option("select[name=action]", "run_now")
    page.click("button[name=index]")
    page.wait_for_selector(".messagelist")
    assert "started run" in page.locator(".messagelist").inner_text()
    shot(page, "schedule-03-run-now")
    engine.run_until_idle()
    run = WorkflowRun.objects.get(metadata__schedule="nightly-digest")
    assert run.status == "COMPLETED"

    page.goto(f"/admin/django_workflow_engine/workflowschedule/{schedule.pk}/change/")
    runs = page.locator("table.dwe-schedule-runs")
    assert "COMPLETED" in runs.inner_text()
    assert "run now" in runs.inner_text()
    shot(page, "schedule-04-runs")


def test_a_delayed_run_shows_scheduled_in_the_run_list(page):  # noqa: F811
    log_in(page)
    run = engine.start("diamond", {"value": 1}, delay=timedelta(hours=2))
    page.goto("/admin/django_workflow_engine/workflowrun/?waiting=scheduled")
    row = page.locator("#result_list tbody tr")
    assert row.count() == 1
    assert "scheduled for" in row.first.inner_text()
    page.goto(f"/admin/django_workflow_engine/workflowrun/{run.id}/change/")
    assert page.locator("text=Scheduled: a delayed start").first.is_visible()
    shot(page, "schedule-05-delayed-run")
