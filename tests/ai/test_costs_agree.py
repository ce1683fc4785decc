"""After a rerun, the run page, the cost report and ``aicosts`` report the same spend: every generation's."""

from __future__ import annotations

import csv
import io
import json
import re
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.urls import reverse

from django_workflow_engine import engine
from django_workflow_engine.admin.common import fmt_cost
from django_workflow_engine.models import AICall

pytestmark = pytest.mark.django_db

CALL = Decimal("0.0000135")  # one gpt-4o-mini mock call


def test_run_page_costs_page_and_aicosts_agree_after_a_rerun(admin_client):
    run = engine.start("ai-text", {"topic": "otters"})
    engine.run_until_idle()
    engine.rerun_from(run.id, "polish", actor="alice")
    engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    ledger = AICall.objects.for_run(run).totals()["cost"]
    assert run.total_cost == ledger == 3 * CALL

    page = admin_client.get(reverse("admin:django_workflow_engine_workflowrun_change", args=[run.pk]))
    html = page.content.decode()
    cell = re.search(r'id="dwe-run-cost">(.*?)</td>', html, re.S).group(1)
    # all attempts, and the current attempt's share (the rerun polish: one call) beside it
    assert re.sub(r"<[^>]+>", "", cell).split("(budget")[0].split() == [
        fmt_cost(ledger),
        "all",
        "2",
        "attempts;",
        fmt_cost(CALL),
        "this",
        "attempt",
    ]
    # the page's own AI-calls panel adds up to the same total
    panel = re.search(r'id="dwe-ai-calls">(.*?)</table>', html, re.S).group(1)
    assert fmt_cost(ledger) in panel

    export = admin_client.get(
        reverse("admin:django_workflow_engine_aicall_costs_csv"), {"table": "workflow"}
    ).content.decode()
    [row] = [r for r in csv.DictReader(io.StringIO(export)) if "ai-text" in r.values()]
    cost_column = next(k for k in row if "cost" in k.lower())
    assert Decimal(row[cost_column]) == run.total_cost

    out = io.StringIO()
    call_command("aicosts", "--by", "workflow", "--format", "json", stdout=out)
    [cli] = [r for r in json.loads(out.getvalue())["rows"] if r["workflow_id"] == "ai-text"]
    assert Decimal(cli["cost"].lstrip("$")) == run.total_cost
