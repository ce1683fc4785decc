"""Map stages (dynamic fan-out) on the in-memory kernel: items, order, max_parallel, failure policies, bad input."""

from __future__ import annotations

import pytest

from django_workflow_engine import WorkflowBuilder, define_stage
from django_workflow_engine.core.fanout import MapInputError, MapSpec, split_item
from django_workflow_engine.errors import WorkflowDefinitionError
from django_workflow_engine.kernel import KernelOptions
from django_workflow_engine.testing import MemoryHarness
from tests import flows_map
from tests.flows_map import WORKFLOWS, split, square


@pytest.fixture
def harness():
    flows_map.EXECUTED.clear()
    flows_map.FLAKY_LEFT.clear()
    return MemoryHarness(WORKFLOWS, options=KernelOptions(retry_base_seconds=0, max_map_items=50))


def items_of(harness, run_id):
    return [s for s in harness.persistence.get_stages(run_id) if s.item_index is not None]


def test_each_item_is_its_own_stage_record_and_the_next_stage_gets_the_outputs_in_order(harness):
    run_id = harness.start("map-squares", {"n": 6})
    harness.run_until_idle()
    run = harness.persistence.get_run(run_id)
    assert run.status == "COMPLETED"
    assert run.output == {"sum": 55, "squares": [0, 1, 4, 9, 16, 25]}
    items = items_of(harness, run_id)
    assert [(s.stage_id, s.item_index, s.item, s.status) for s in items] == [
        (f"square[{i}]", i, i, "COMPLETED") for i in range(6)
    ]
    assert sorted(flows_map.EXECUTED) == list(range(6))  # each item executed once
    parent = harness.persistence.get_stage(run_id, "square")
    assert parent.status == "COMPLETED"
    assert parent.metrics == {"map_items": 6, "map_queued": 6, "map_done": 6, "map_failed": []}


def test_max_parallel_queues_no_more_items_than_allowed(harness):
    run_id = harness.start("map-squares-2", {"n": 5})
    harness.drain(max_jobs=1)  # split: fans out
    jobs = [j for j in harness.jobs.jobs_for_run(run_id) if j.stage_id.startswith("square[")]
    assert sorted(j.stage_id for j in jobs) == ["square[0]", "square[1]"]
    harness.run_until_idle()
    assert harness.persistence.get_run(run_id).output["squares"] == [0, 1, 4, 9, 16]
    jobs = [j for j in harness.jobs.jobs_for_run(run_id) if j.stage_id.startswith("square[")]
    assert len(jobs) == 5


def test_an_item_is_retried_on_its_own(harness):
    flows_map.FLAKY_LEFT[2] = 1
    run_id = harness.start("map-squares", {"n": 4})
    harness.run_until_idle()
    assert harness.persistence.get_run(run_id).output["squares"] == [0, 1, 4, 9]
    assert sorted(flows_map.EXECUTED) == [0, 1, 2, 2, 3]
    job = next(j for j in harness.jobs.jobs_for_run(run_id) if j.stage_id == "square[2]")
    assert job.attempt == 2


def test_on_error_fail_fails_the_run_and_cancels_the_other_items(harness):
    run_id = harness.start("map-squares-2", {"n": 6, "bad": [1]})
    harness.run_until_idle()
    run = harness.persistence.get_run(run_id)
    assert run.status == "FAILED"
    assert run.output["error"]["stage_id"] == "square"
    assert "Item 1 of map stage 'square' failed: ValueError: negative item -1" in run.output["error"]["message"]
    statuses = {s.stage_id: s.status for s in items_of(harness, run_id)}
    assert statuses["square[1]"] == "FAILED"
    assert "CANCELLED" in statuses.values()
    assert harness.persistence.get_stage(run_id, "total") is None


def test_on_error_continue_hands_the_next_stage_the_errors_beside_the_outputs(harness):
    run_id = harness.start("map-squares-tolerant", {"n": 5, "bad": [1, 3]})
    harness.run_until_idle()
    run = harness.persistence.get_run(run_id)
    assert run.status == "COMPLETED"
    assert run.output == {
        "sum": 0 + 4 + 16,
        "errors": [
            {"index": 1, "error": "ValueError: negative item -1"},
            {"index": 3, "error": "ValueError: negative item -3"},
        ],
    }
    square_output = harness.persistence.get_stage(run_id, "square").output_data["value"]
    assert square_output["outputs"] == [0, None, 4, None, 16]


def test_a_map_over_an_empty_list_completes_at_once(harness):
    run_id = harness.start("map-squares", {"n": 0})
    harness.run_until_idle()
    assert harness.persistence.get_run(run_id).output == {"sum": 0, "squares": []}
    assert items_of(harness, run_id) == []


@pytest.mark.parametrize(
    ("input", "message"),
    [
        ({"shape": "dict"}, "Map stage 'square': over='chunks' must be a list, got dict."),
        ({"shape": "none"}, "Map stage 'square': over='chunks' must be a list, got None."),
        ({"n": 51}, "Map stage 'square': over='chunks' has 51 items, more than MAX_MAP_ITEMS (50)"),
    ],
)
def test_bad_map_input_fails_the_run_with_a_clear_error_and_creates_no_item(harness, input, message):
    run_id = harness.start("map-squares-field", input)
    harness.run_until_idle()
    run = harness.persistence.get_run(run_id)
    assert run.status == "FAILED"
    assert run.output["error"]["code"] == "MAP_INPUT"
    assert run.output["error"]["message"].startswith(message)
    assert [s.stage_id for s in harness.persistence.get_stages(run_id)] == ["split"]
    assert harness.jobs.jobs_for_run(run_id)[-1].stage_id == "split"


def test_map_definitions_are_checked():
    with pytest.raises(WorkflowDefinitionError, match="needs a stage before it"):
        WorkflowBuilder("m1", "M").map(square)
    with pytest.raises(WorkflowDefinitionError, match="max_parallel= must be a positive integer"):
        WorkflowBuilder("m2", "M").pipe(split).map(square, max_parallel=0)
    with pytest.raises(WorkflowDefinitionError, match="on_error= must be 'fail' or 'continue'"):
        WorkflowBuilder("m3", "M").pipe(split).map(square, on_error="ignore")  # type: ignore[arg-type]
    limited = define_stage(id="limited", name="limited", max_concurrent=2)(lambda ctx: None)
    with pytest.raises(WorkflowDefinitionError, match="cannot have max_concurrent"):
        WorkflowBuilder("m5", "M").pipe(split).map(limited)
    long = define_stage(id="x" * 89, name="long")(lambda ctx: None)
    with pytest.raises(WorkflowDefinitionError, match="at most 88 characters"):
        WorkflowBuilder("m4", "M").pipe(split).map(long)


def test_item_ids_and_items():
    assert split_item("square[12]") == ("square", 12)
    assert split_item("square") == ("square", None)
    spec = MapSpec("square", over="chunks")
    assert spec.items({"chunks": (1, 2)}, 10) == [1, 2]
    with pytest.raises(MapInputError, match="names no field of the previous stage's output"):
        spec.items({"other": []}, 10)
    with pytest.raises(MapInputError, match="the over= function raised KeyError"):
        MapSpec("square", over=lambda out: out["x"]).items({}, 10)
    workflow = flows_map.squares
    assert workflow.stage("square[3]") is square
    assert workflow.has_stage("square[3]")
    assert not workflow.has_stage("split[3]")


def test_a_worker_that_finishes_an_item_goes_on_with_the_oldest_one_no_worker_took(harness):
    from django_workflow_engine.hosts.drain import drain

    run_id = harness.start("map-squares", {"n": 6})
    drain(harness.kernel, max_jobs=3, eager=True)  # split (fans out, starts item 0 here), item 0, then item 1
    assert flows_map.EXECUTED == [0, 1]  # taken in queue order, without a queue round trip
    jobs = {j.stage_id: j for j in harness.jobs.jobs_for_run(run_id)}
    assert (jobs["square[1]"].status, jobs["square[1]"].attempt) == ("COMPLETED", 1)
    # item 2 (taken after 1, given back when max_jobs stopped the drain) waits in the queue again
    assert (jobs["square[2]"].status, jobs["square[2]"].attempt) == ("PENDING", 0)
    assert all(jobs[f"square[{i}]"].status == "PENDING" for i in range(3, 6))
    drain(harness.kernel, eager=True)
    assert flows_map.EXECUTED == [0, 1, 2, 3, 4, 5]
    assert max(j.attempt for j in harness.jobs.jobs_for_run(run_id)) == 1  # each item executed once
    assert harness.persistence.get_run(run_id).output["squares"] == [0, 1, 4, 9, 16, 25]


def test_one_item_reruns_on_its_own_then_the_map_and_what_follows_finish_again(harness):
    from django_workflow_engine.core.errors import InvalidRunState
    from django_workflow_engine.kernel import RerunFrom

    run_id = harness.start("map-squares-tolerant", {"n": 4, "bad": [2]})
    harness.run_until_idle()
    assert harness.persistence.get_run(run_id).output["errors"] == [
        {"index": 2, "error": "ValueError: negative item -2"}
    ]
    flows_map.EXECUTED.clear()
    first = {s.stage_id: s.id for s in harness.persistence.get_stages(run_id)}
    # rerun one item that completed (its model was updated, say)
    harness.dispatch(RerunFrom(run_id=run_id, stage_id="square[1]", actor="ops"))
    harness.run_until_idle()
    assert flows_map.EXECUTED == [1]  # that item alone
    run = harness.persistence.get_run(run_id)
    assert run.status == "COMPLETED"
    assert run.output["sum"] == 0 + 1 + 9
    now = {s.stage_id: s for s in harness.persistence.get_stages(run_id)}
    assert now["square[1]"].id != first["square[1]"]
    assert now["square[1]"].attempt == 1
    assert now["square[0]"].id == first["square[0]"]  # the other items are kept
    assert now["total"].id != first["total"]  # what follows the map ran again
    history = [s for s in harness.persistence.get_stage_history(run_id) if s.superseded_at is not None]
    assert {s.stage_id for s in history} == {"square", "square[1]", "total"}
    assert {s.superseded_by for s in history} == {"ops"}

    failing = harness.start("map-squares", {"n": 3, "bad": [1]})
    harness.run_until_idle()
    with pytest.raises(InvalidRunState, match="rerun 'square' itself"):
        harness.dispatch(RerunFrom(run_id=failing, stage_id="square[0]"))


@pytest.mark.parametrize("value", [0, -1, 2.5, "100", True, 10**9 + 1])
def test_manage_py_check_names_a_bad_max_map_items(settings, value):
    from django_workflow_engine.checks import check_settings

    settings.WORKFLOW_ENGINE = {"MAX_MAP_ITEMS": value}
    errors = check_settings(None)
    assert [e.id for e in errors] == ["django_workflow_engine.E054"]
    assert "MAX_MAP_ITEMS" in errors[0].msg
    settings.WORKFLOW_ENGINE = {"MAX_MAP_ITEMS": 500}
    assert check_settings(None) == []
