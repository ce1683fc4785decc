"""AI traffic in the admin, in a real browser: a stage deferred by a rate limit and what the cache saved."""

from __future__ import annotations

import pytest

from django_workflow_engine import create_ai_helper, engine
from django_workflow_engine.models import WorkflowJob
from tests.acceptance.test_admin_browser import (  # noqa: F401 (the browser fixtures)
    _reset_flows,
    browser,
    drain,
    log_in,
    page,
    shot,
)

pytestmark = [pytest.mark.browser, pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]


def test_a_rate_limited_run_and_the_cache_savings_are_visible(page, settings):  # noqa: F811
    settings.WORKFLOW_ENGINE = {
        **settings.WORKFLOW_ENGINE,
        "AI_RATE_LIMITS": {"gpt-4o-mini": {"rpm": 1}},
        "AI_RATE_LIMIT_WAIT_SECONDS": 0,
    }
    run = engine.start("ai-burst", {"n": 2})
    drain()  # the second call is over the limit: the stage is deferred
    reason = WorkflowJob.objects.get(run=run).wait_reason
    assert reason.startswith("rate limit gpt-4o-mini until ")
    cached = create_ai_helper("task.browser")
    for _ in range(2):
        cached.generate_text("gpt-4o", "Name a river.", cache=True, mock_response="The Nile.")

    log_in(page)
    page.goto("/admin/django_workflow_engine/workflowrun/")
    wait = page.locator(".dwe-wait").first
    assert wait.is_visible()
    assert wait.inner_text() == reason
    page.click("#changelist-filter >> text=for an AI rate limit")
    page.wait_for_url("**waiting=rate**")
    assert page.locator("#result_list tbody tr").count() == 1
    shot(page, "40-rate-limited-runs")

    page.goto(f"/admin/django_workflow_engine/workflowrun/{run.id}/change/")
    waits = page.locator("#dwe-waits")
    assert waits.is_visible()
    assert f"Stage calls is deferred: {reason} (the same attempt; no retry is used)." in waits.inner_text()
    shot(page, "41-deferred-run")

    page.goto("/admin/django_workflow_engine/aicall/costs/")
    saved = page.locator("#dwe-cache-saved")
    assert saved.is_visible()
    assert "Saved by the response cache (1 cached calls)" in saved.text_content()
    assert "$0.000225" in saved.inner_text()  # one gpt-4o mock call
    shot(page, "42-costs-cache-saved")
