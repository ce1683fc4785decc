"""The admin's run page, run list and cost report at a phone width and in dark mode: no horizontal overflow of
the page, legible timeline text, and timeline bands that follow Django admin's colour scheme."""

from __future__ import annotations

import os

import pytest
from django.contrib.auth.models import User

from django_workflow_engine import engine
from tests import flows

from .test_admin_browser import ARGS, CHROMIUM, PASSWORD, SHOTS, shot

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

PAGE_WIDTH = "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"


@pytest.fixture(scope="module")
def browser():
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


def _page(browser, live_server, width: int, scheme: str):
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": width, "height": 844}, color_scheme=scheme
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    User.objects.filter(username="operator").exists() or User.objects.create_superuser(
        "operator", "operator@example.com", PASSWORD
    )
    page.goto("/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    return context, page


def _failed_rerun_run():
    flows.FAIL["b"] = "RateLimitError: " + "a long provider message " * 12
    run = engine.start("diamond", {"value": 1})
    engine.run_until_idle()
    flows.FAIL.clear()
    engine.rerun_from(run.id, "b", actor="alice")
    flows.FAIL["d"] = "ValueError: " + "x" * 300
    engine.run_until_idle()
    return run


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_phone_width_has_no_horizontal_overflow(browser, live_server, scheme):
    run = _failed_rerun_run()
    context, page = _page(browser, live_server, 390, scheme)
    try:
        for name, path in [
            ("run", f"/admin/django_workflow_engine/workflowrun/{run.pk}/change/"),
            ("runs", "/admin/django_workflow_engine/workflowrun/"),
            ("costs", "/admin/django_workflow_engine/aicall/costs/"),
        ]:
            page.goto(path)
            shot(page, f"layout-390-{scheme}-{name}")
            width = page.evaluate(PAGE_WIDTH)
            assert width <= 390, f"{name} page is {width} px wide at a 390 px viewport ({scheme})"
        page.goto(f"/admin/django_workflow_engine/workflowrun/{run.pk}/change/")
        # the timeline keeps legible text: it scrolls inside its box instead of shrinking to fit
        size = page.evaluate(
            "(() => { const t = document.querySelector('svg.dwe-timeline text');"
            " return t.getBoundingClientRect().height; })()"
        )
        assert size >= 9, f"timeline text is {size} px high"
    finally:
        context.close()


def test_dark_mode_timeline_bands_follow_the_admin_colours(browser, live_server):
    run = _failed_rerun_run()
    context, page = _page(browser, live_server, 1440, "dark")
    try:
        page.goto(f"/admin/django_workflow_engine/workflowrun/{run.pk}/change/")
        shot(page, "layout-1440-dark-run")
        fills = page.evaluate(
            "[...document.querySelectorAll('svg.dwe-timeline rect.dwe-group')].map(r => getComputedStyle(r).fill)"
        )
        assert fills
        assert all(f not in ("rgb(255, 255, 255)", "rgb(247, 249, 251)") for f in fills), fills
        # every section of the run page fits its area at a desktop width too
        overflow = page.evaluate(
            "[...document.querySelectorAll('.dwe-section table')]"
            ".filter(t => t.getBoundingClientRect().right > document.documentElement.clientWidth + 1).length"
        )
        assert overflow == 0
    finally:
        context.close()


def test_desktop_changelists_fit_their_area(browser, live_server):
    from django.utils import timezone

    from django_workflow_engine.models import WorkflowWorker
    from tests.admin.factories import seed_runs

    runs = seed_runs(30, ai_calls=3, logs=3)
    now = timezone.now()
    WorkflowWorker.objects.create(
        id="worker-host-with-a-long-name.example.internal:123456",
        host="worker-host-with-a-long-name.example.internal",
        pid=123456,
        queues=["workflows", "emails"],
        transport="rq",
        started_at=now,
        heartbeat_at=now,
        job_id="j",
        run_id=getattr(runs[0], "id", None) if runs else None,
        workflow_id="diamond",
        stage_id="merge-everything",
        stages_done=123456,
    )
    context, page = _page(browser, live_server, 1440, "light")
    try:
        models = (
            "aicall",
            "workflowstage",
            "workflowlog",
            "workflowrun",
            "workflowjob",
            "workflowworker",
            "outboxevent",
        )
        for model in models:
            page.goto(f"/admin/django_workflow_engine/{model}/")
            shot(page, f"layout-1440-{model}-list")
            widths = page.evaluate(
                "(() => { const t = document.querySelector('#result_list');"
                " return t ? [t.scrollWidth, t.parentElement.clientWidth] : [0, 0]; })()"
            )
            assert widths[0] <= widths[1] + 1, f"{model} list is {widths[0]} px wide in {widths[1]} px"
    finally:
        context.close()
