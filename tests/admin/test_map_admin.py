"""A map stage on the run page: one timeline row with its items' counts, linking to the items' list."""

from __future__ import annotations

import html as htmllib
import re

import pytest
from django.urls import reverse

from django_workflow_engine import engine
from django_workflow_engine.hosts.drain import drain
from django_workflow_engine.models import WorkflowStage
from tests import flows_map

pytestmark = pytest.mark.django_db


def test_the_timeline_shows_a_map_as_one_row_with_counts_and_a_link_to_its_items(admin_client_):
    flows_map.EXECUTED.clear()
    run = engine.start("map-squares-2", {"n": 7, "bad": [3]})
    drain(engine.kernel, max_jobs=3)  # split, then items 0 and 1 done; max_parallel=2 queued items 2 and 3
    WorkflowStage.objects.filter(run=run, stage_id="square[2]").update(status="RUNNING")  # as a worker has it
    page = admin_client_.get(reverse("admin:django_workflow_engine_workflowrun_change", args=[run.id]))
    content = page.content.decode()
    start = content.index('class="dwe-timeline"')
    svg = content[start : content.index("</svg>", start)]
    assert svg.count('data-stage="square"') == 1  # one row for the map
    assert 'data-stage="square[' not in svg  # no row per item
    assert "2 done · 1 running · 0 failed · 4 waiting" in svg
    link = re.search(r'<a class="dwe-map-items" href="([^"]+)"', svg)
    assert link is not None
    items_url = htmllib.unescape(link.group(1))
    assert items_url == reverse("admin:django_workflow_engine_workflowstage_changelist") + f"?run={run.id}&map=square"

    items = admin_client_.get(items_url)
    assert items.status_code == 200
    listed = items.content.decode()
    for index in range(7):
        assert f"square[{index}]" in listed
    assert "7 workflow stages" in listed

    WorkflowStage.objects.filter(run=run, stage_id="square[2]").update(status="PENDING")
    engine.run_until_idle()  # item 3 fails for good: the map fails, the items not started are cancelled
    page = admin_client_.get(reverse("admin:django_workflow_engine_workflowrun_change", args=[run.id]))
    svg = page.content.decode()
    assert re.search(r"\d+ done · 0 running · 1 failed · 0 waiting · \d+ cancelled", svg)
