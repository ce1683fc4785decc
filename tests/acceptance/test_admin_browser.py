"""The admin in a real browser: Playwright (Python) driving Debian's headless Chromium against ``live_server``.

Screenshots of every page visited are saved under ``test-artifacts/admin/`` (gitignored) for review.
Runs are executed in this process with ``engine.run_until_idle()`` between browser steps (or in a thread while
a gated stage holds a run in RUNNING).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection

from django_workflow_engine import engine
from django_workflow_engine.models import WorkflowRun, WorkflowStage
from tests import flows
from tests.admin.factories import seed_runs

# Playwright's sync API keeps an asyncio event loop in this thread; Django's async-safety check would then refuse
# the ORM calls the test makes between browser steps. Nothing here is actually concurrent with that loop.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "admin"
PASSWORD = "browser-test-pw"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's 'chromium' package (.ci/run does it with apt).")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(autouse=True)
def _reset_flows():
    flows.reset()
    yield
    flows.reset()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def log_in(page) -> None:
    User.objects.create_superuser("operator", "operator@example.com", PASSWORD)
    page.goto("/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    shot(page, "01-login")
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    assert page.locator("text=Workflow runs").first.is_visible()
    shot(page, "02-index")


def _drain_in_thread() -> None:
    try:
        engine.run_until_idle()
    finally:
        connection.close()


def drain() -> None:
    """Run due work to completion in another thread.

    Not in this thread: Playwright's event loop is running here, and the engine executes ``async def`` stages
    (the diamond's stage c) with ``asyncio.run()``, which refuses to start inside a running loop.
    """
    worker = threading.Thread(target=_drain_in_thread)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "run_until_idle did not finish within 60 s"


def test_log_in_filter_runs_and_open_a_run_timeline(page):
    ok = engine.start("diamond", {"value": 5})
    drain()
    flows.FAIL["b"] = "upstream timeout"
    bad = engine.start("diamond", {"value": 1})
    drain()
    flows.FAIL.clear()
    seed_runs(20)
    assert WorkflowRun.objects.get(pk=bad.pk).status == "FAILED"

    log_in(page)
    page.click("text=Workflow runs")
    page.wait_for_selector("#result_list")
    shot(page, "03-runs")
    page.click("#changelist-filter >> text=Failed")
    page.wait_for_url(re.compile(r"status__exact=FAILED"))
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert bad.pk[-8:] in rows.first.inner_text()
    shot(page, "04-runs-filtered-failed")

    page.goto("/admin/django_workflow_engine/workflowrun/")  # without the status filter, then search
    page.fill("#searchbar", ok.pk[-8:])
    page.press("#searchbar", "Enter")
    page.wait_for_url(re.compile(r"q="))
    assert page.locator("#result_list tbody tr").count() == 1
    page.click(f"#result_list >> text={ok.pk[-8:]}")
    page.wait_for_selector("svg.dwe-timeline")
    assert page.locator("svg.dwe-timeline g.dwe-bar").count() == 4
    assert page.locator("#dwe-run-status").get_attribute("data-status") == "COMPLETED"
    assert page.locator("#dwe-stages tbody tr").count() == 4
    shot(page, "05-run-page")

    page.goto(f"/admin/django_workflow_engine/workflowrun/{bad.pk}/change/")
    assert "RuntimeError: upstream timeout" in page.locator("#dwe-stages").inner_text()
    page.click("#dwe-logs >> text=error")
    shot(page, "06-failed-run-page")


def test_cancel_a_running_run(page):
    gate = flows.GATES["a"] = threading.Event()
    run = engine.start("diamond", {"value": 1})

    worker = threading.Thread(target=_drain_in_thread, daemon=True)
    worker.start()
    try:
        for _ in range(200):
            if WorkflowStage.objects.filter(run=run, stage_id="a", status="RUNNING").exists():
                break
            threading.Event().wait(0.05)
        log_in(page)
        page.goto(f"/admin/django_workflow_engine/workflowrun/{run.pk}/change/")
        assert page.locator("#dwe-run-status").get_attribute("data-status") == "RUNNING"
        assert page.locator('meta[http-equiv="refresh"]').count() == 1
        assert page.locator('g.dwe-bar[data-status="RUNNING"]').count() == 1
        shot(page, "07-running-run")
        page.click("text=Cancel run…")
        page.wait_for_selector("text=Are you sure you want to cancel this run?")
        page.fill("#id_reason", "stuck on a gate")
        shot(page, "08-cancel-confirmation")
        page.click("input[type=submit][value^='Yes, cancel']")
        page.wait_for_selector(".messagelist")
        assert "Cancelled 1 run" in page.locator(".messagelist").inner_text()
        assert page.locator("#dwe-run-status").get_attribute("data-status") == "CANCELLED"
        shot(page, "09-cancelled-run")
    finally:
        gate.set()
        worker.join(30)
    run.refresh_from_db()
    assert run.status == "CANCELLED"
    page.click("text=History")
    assert "stuck on a gate" in page.locator("#change-history").inner_text()
    shot(page, "10-run-history")


def test_bulk_cancel_from_the_run_list(page):
    running = [engine.start("diamond", {"value": i}) for i in range(2)]
    done = seed_runs(1)[0]
    log_in(page)
    page.goto("/admin/django_workflow_engine/workflowrun/")
    for run in [*running, done]:
        page.check(f"input[name=_selected_action][value='{run.pk}']")
    page.select_option("select[name=action]", "cancel_selected_runs")
    page.click("button[name=index]")
    page.wait_for_selector("text=Skipped (already finished)")
    shot(page, "11-bulk-cancel-confirmation")
    page.click("input[type=submit][value^='Yes, cancel']")
    page.wait_for_selector(".messagelist")
    assert "Cancelled 2 runs; skipped 1 run" in page.locator(".messagelist").inner_text()
    shot(page, "12-bulk-cancel-done")
    assert set(WorkflowRun.objects.filter(pk__in=[r.pk for r in running]).values_list("status", flat=True)) == {
        "CANCELLED"
    }


def test_rerun_a_failed_run_from_a_chosen_stage(page):
    flows.FAIL["c"] = "flaky provider"
    run = engine.start("diamond", {"value": 2})
    drain()
    assert WorkflowRun.objects.get(pk=run.pk).status == "FAILED"
    flows.FAIL.clear()

    log_in(page)
    page.goto(f"/admin/django_workflow_engine/workflowrun/{run.pk}/change/")
    assert page.locator("#dwe-run-status").get_attribute("data-status") == "FAILED"
    page.click("text=Rerun from stage…")
    page.wait_for_selector("input[name=stage]")
    assert page.locator("input[name=stage]").count() == 4
    page.check("input[name=stage][value=c]")
    shot(page, "13-rerun-form")
    page.click("input[type=submit][value='Rerun from this stage']")
    page.wait_for_selector(".messagelist")
    assert "Rerunning 1 run from stage 'c'" in page.locator(".messagelist").inner_text()
    assert page.locator("#dwe-run-status").get_attribute("data-status") == "RUNNING"
    shot(page, "14-rerun-started")

    drain()
    page.reload()
    assert page.locator("#dwe-run-status").get_attribute("data-status") == "COMPLETED"
    assert "4/4 stages" in page.locator(".dwe-summary").inner_text()
    assert page.locator('g.dwe-bar[data-status="COMPLETED"]').count() == 4
    shot(page, "15-rerun-completed")


def test_costs_page(page):
    seed_runs(30, ai_calls=3)
    seed_runs(10, ai_calls=2, workflow_id="triple")
    log_in(page)
    page.goto("/admin/django_workflow_engine/aicall/")
    assert page.locator("#dwe-ai-totals").is_visible()
    shot(page, "16-ai-calls")
    page.click("text=Cost report")
    page.wait_for_selector("svg.dwe-cost-chart")
    assert page.locator("svg.dwe-cost-chart rect.dwe-day").count() == 30
    assert "gpt-4o-mini" in page.locator("#dwe-by-model").inner_text()
    assert "triple" in page.locator("#dwe-by-workflow").inner_text()
    shot(page, "17-costs")
    href = page.locator("#dwe-by-model a.dwe-csv").get_attribute("href")
    response = page.request.get(href)
    assert response.ok
    assert response.text().splitlines()[0].startswith("model,calls")

    page.goto("/admin/django_workflow_engine/")
    page.click("#dwe-reports >> text=AI costs")
    page.wait_for_selector("svg.dwe-cost-chart")
