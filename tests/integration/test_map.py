"""Map stages through the engine on the ORM (SQLite and PostgreSQL): one batched fan-out, items, the join."""

from __future__ import annotations

import pytest
from django.test.utils import override_settings

from django_workflow_engine import engine
from django_workflow_engine.models import WorkflowJob, WorkflowStage
from tests import flows_map

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clean():
    flows_map.EXECUTED.clear()
    flows_map.FLAKY_LEFT.clear()


def test_a_map_runs_each_item_once_and_hands_the_outputs_on_in_order():
    run = engine.start("map-squares", {"n": 30})
    engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert run.output == {"sum": sum(i * i for i in range(30)), "squares": [i * i for i in range(30)]}
    items = WorkflowStage.objects.filter(run=run, item_index__isnull=False).order_by("item_index")
    assert [(s.stage_id, s.item, s.status) for s in items] == [(f"square[{i}]", i, "COMPLETED") for i in range(30)]
    assert sorted(flows_map.EXECUTED) == list(range(30))


@override_settings(WORKFLOW_ENGINE={"MAX_MAP_ITEMS": 10})
def test_more_items_than_the_limit_fail_the_run_and_write_no_item():
    run = engine.start("map-squares-field", {"n": 11})
    engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "FAILED"
    assert run.output["error"] == {
        "code": "MAP_INPUT",
        "message": "Map stage 'square': over='chunks' has 11 items, more than MAX_MAP_ITEMS (10); split the "
        "input or raise the setting.",
    }
    assert list(WorkflowStage.objects.filter(run=run).values_list("stage_id", flat=True)) == ["split"]
    assert not WorkflowJob.objects.filter(run_id=run.id, stage_id__startswith="square").exists()


def test_on_error_continue_on_the_orm():
    run = engine.start("map-squares-tolerant", {"n": 6, "bad": [1, 5]})
    engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert run.output["sum"] == 4 + 9 + 16
    assert [e["index"] for e in run.output["errors"]] == [1, 5]


def test_one_item_reruns_on_its_own_on_the_orm():
    run = engine.start("map-squares", {"n": 5})
    engine.run_until_idle()
    flows_map.EXECUTED.clear()
    kept = WorkflowStage.objects.get(run=run, stage_id="square[0]").pk
    engine.rerun_from(run.id, "square[3]")
    engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert run.output == {"sum": 30, "squares": [0, 1, 4, 9, 16]}
    assert flows_map.EXECUTED == [3]
    assert WorkflowStage.objects.get(run=run, stage_id="square[0]").pk == kept
    assert WorkflowStage.objects.get(run=run, stage_id="square[3]").attempt == 1
    assert WorkflowStage.all_generations.filter(run=run, stage_id="square[3]").count() == 2
