"""Flow control in the admin, in a real browser: a run's deadline under its status, and a failed stage's
traceback folded in its row of the run page."""

from __future__ import annotations

import pytest

from django_workflow_engine import engine

from . import test_admin_browser as base

pytestmark = [pytest.mark.browser, pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

browser = base.browser
page = base.page
_reset_flows = base._reset_flows


def test_deadline_and_folded_traceback(page):
    timed_out = engine.start("sleepy", {"seconds": 5, "label": "<b>x</b>"})
    engine.run_until_idle()  # the nap stage is interrupted at its 2 s timeout
    waiting = engine.create("sleepy", {"seconds": 0}, deadline=3600)

    base.log_in(page)
    page.goto("/admin/django_workflow_engine/workflowrun/")
    base.shot(page, "flow-01-list-deadline")
    row = page.locator("#result_list tbody tr", has_text=waiting.short_id)
    assert row.locator(".dwe-deadline").inner_text().startswith("deadline ")
    assert page.locator("#result_list .dwe-deadline").count() == 1  # the finished run shows none

    page.goto(f"/admin/django_workflow_engine/workflowrun/{timed_out.id}/change/")
    stage_row = page.locator("tr[data-stage=nap]")
    assert "timed out after 2 s" in stage_row.locator("pre.dwe-error").inner_text()
    trace = stage_row.locator("details.dwe-traceback pre")
    assert not trace.is_visible()  # folded
    stage_row.locator("details.dwe-traceback summary").click()
    assert trace.is_visible()
    assert "StageTimedOut" in trace.inner_text()
    assert "time.sleep" in trace.inner_text()
    base.shot(page, "flow-02-traceback")
