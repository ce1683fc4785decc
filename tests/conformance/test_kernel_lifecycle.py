"""The run lifecycle through the kernel on the in-memory adapters."""

from __future__ import annotations

from decimal import Decimal

import pytest

from django_workflow_engine.errors import (
    InvalidConfig,
    InvalidInput,
    InvalidRunState,
    StageNotFound,
    WorkflowNotFound,
)
from django_workflow_engine.kernel import (
    CancelRun,
    ClaimPendingRuns,
    CreateRun,
    CreateRuns,
    ReplayDeadLetters,
    RerunFrom,
    TransitionRun,
)
from tests import flows

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _reset():
    flows.reset()
    yield
    flows.reset()


@pytest.fixture
def h(make_kernel):
    return make_kernel([flows.diamond])


def test_diamond_completes_and_d_sees_parallel_outputs(h):
    run_id = h.start("diamond", {"value": 5})
    h.drain()
    run = h.run(run_id)
    assert run.status == "COMPLETED"
    # a: 5*2=10; b: 11; c: 20; d: 31
    assert run.output == {"total": 31, "tags": ["b", "c"]}
    assert run.total_cost == Decimal("0.25")
    assert run.total_tokens == 30
    stages = h.stages(run_id)
    assert {k: (s.status, s.execution_group) for k, s in stages.items()} == {
        "a": ("COMPLETED", 1),
        "b": ("COMPLETED", 2),
        "c": ("COMPLETED", 2),
        "d": ("COMPLETED", 3),
    }
    assert dict(flows.CALLS) == {"a": 1, "b": 1, "c": 1, "d": 1}


def test_events_are_sequenced_and_in_order(h):
    run_id = h.start("diamond", {"value": 1})
    h.drain()
    rows = h.persistence.get_events(run_id)
    assert [r.sequence for r in rows] == list(range(1, len(rows) + 1))
    types = [r.event_type for r in rows]
    assert types[:2] == ["workflow:created", "workflow:started"]
    assert types[-1] == "workflow:completed"
    assert types.count("stage:started") == 4
    assert types.count("stage:completed") == 4
    assert "stage:progress" in types
    assert types.index("stage:progress") < types.index("stage:completed")


def test_logs_are_stored_with_run_and_stage(h):
    run_id = h.start("diamond", {"value": 3})
    h.drain()
    logs = h.persistence.get_logs(run_id)
    assert [(log.level, log.message, log.metadata) for log in logs] == [("INFO", "doubling", {"value": 3})]
    assert logs[0].stage_pk == h.stages(run_id)["a"].id


def test_config_defaults_and_override(h):
    run_id = h.start("diamond", {"value": 1}, config={"a": {"factor": 5}})
    h.drain()
    assert h.run(run_id).config["a"] == {"factor": 5}
    assert h.run(run_id).output["total"] == (5 + 1) + (5 + 10)


def test_failing_stage_fails_run_with_its_message(h):
    flows.FAIL["c"] = "disk on fire"
    run_id = h.start("diamond", {"value": 1})
    h.drain()
    # retries are immediate with retry_base_seconds=0; three attempts, then the run fails
    assert flows.CALLS["c"] == 3
    run = h.run(run_id)
    assert run.status == "FAILED"
    assert run.output["error"]["message"] == "RuntimeError: disk on fire"
    assert run.output["error"]["stage_id"] == "c"
    assert h.stages(run_id)["c"].error_message == "RuntimeError: disk on fire"
    assert "d" not in h.stages(run_id)
    assert h.event_types(run_id)[-1] == "workflow:failed"


def test_invalid_input_raises_and_writes_nothing(h):
    with pytest.raises(InvalidInput, match="field 'value'"):
        h.start("diamond", {"value": "not a number"})
    assert h.run_count() == 0
    assert h.event_count() == 0


def test_invalid_config_names_stage_and_field(h):
    with pytest.raises(InvalidConfig, match=r"stage 'a': field 'factor'"):
        h.start("diamond", {"value": 1}, config={"a": {"factor": 0}})
    with pytest.raises(InvalidConfig, match="stage 'zzz'"):
        h.start("diamond", {"value": 1}, config={"zzz": {}})
    assert h.run_count() == 0


def test_unknown_workflow(h):
    with pytest.raises(WorkflowNotFound, match="'nope'.*diamond"):
        h.start("nope", {})
    assert h.run_count() == 0


def test_create_many_starts_every_run_in_batches(h):
    result = h.dispatch(
        CreateRuns(workflow_id="diamond", inputs=({"value": 1}, {"value": 2}, {"value": 3}), batch_size=2)
    )
    assert [run.input for run in result.runs] == [{"value": 1}, {"value": 2}, {"value": 3}]
    assert [h.run(run_id).status for run_id in result.run_ids] == ["RUNNING"] * 3
    assert h.event_count() == 6  # workflow:created and workflow:started per run
    h.drain()
    assert [h.run(run_id).output["total"] for run_id in result.run_ids] == [15, 19, 23]


def test_create_many_with_one_bad_input_writes_nothing(h):
    with pytest.raises(InvalidInput, match=r"^inputs\[1\]: .*field 'value'"):
        h.dispatch(CreateRuns(workflow_id="diamond", inputs=({"value": 1}, {"value": "x"}), batch_size=1))
    assert h.run_count() == 0
    assert h.event_count() == 0


def test_create_many_replays_keys_of_create(h):
    first = h.dispatch(CreateRun(workflow_id="diamond", input={"value": 1}, idempotency_key="k1", start=True)).run_id
    result = h.dispatch(
        CreateRuns(workflow_id="diamond", inputs=({"value": 1}, {"value": 2}), idempotency_keys=("k1", "k2"))
    )
    assert (result.run_ids[0], result.runs[0]) == (first, None)
    assert h.has_idempotency_key("k2", "run.create")
    assert (
        h.dispatch(CreateRun(workflow_id="diamond", input={}, idempotency_key="k2", start=True)).run_id
        == (result.run_ids[1])
    )
    assert h.run_count() == 2


def test_pending_run_is_claimed_then_runs(h):
    run_id = h.dispatch(CreateRun(workflow_id="diamond", input={"value": 1})).run_id
    assert h.run(run_id).status == "PENDING"
    claimed = h.dispatch(ClaimPendingRuns(worker_id="w1")).claimed
    assert [c.run_id for c in claimed] == [run_id]
    assert len(claimed[0].job_ids) == 1
    assert h.dispatch(ClaimPendingRuns(worker_id="w1")).claimed == []
    h.drain()
    assert h.run(run_id).status == "COMPLETED"


def test_claim_of_unknown_workflow_fails_only_that_run(h):
    bad = h.dispatch(CreateRun(workflow_id="diamond", input={"value": 1})).run_id
    good = h.dispatch(CreateRun(workflow_id="diamond", input={"value": 2})).run_id
    h.set_run_workflow(bad, "removed-workflow")
    h.drain()
    assert h.run(bad).status == "FAILED"
    assert h.run(bad).output["error"]["code"] == "WORKFLOW_NOT_FOUND"
    assert h.run(good).status == "COMPLETED"


def test_cancel_cascades_to_stages_and_jobs(h):
    run_id = h.start("diamond", {"value": 1})
    assert h.dispatch(CancelRun(run_id, reason="user asked")).cancelled is True
    assert h.run(run_id).status == "CANCELLED"
    assert {s.status for s in h.stages(run_id).values()} == {"CANCELLED"}
    assert {j.status for j in h.jobs.jobs_for_run(run_id)} == {"CANCELLED"}
    assert h.dispatch(CancelRun(run_id)).cancelled is False
    assert h.drain().jobs == 0
    assert h.event_types(run_id)[-1] == "workflow:cancelled"


def test_cancel_during_execution_discards_late_result(h):
    run_id = h.start("diamond", {"value": 1})
    job = h.jobs.dequeue("w", h.clock.now())

    from django_workflow_engine.kernel import run_job

    def cancel_mid_stage(ctx):
        h.dispatch(CancelRun(run_id))
        return {"value": 99}

    original = flows.stage_a.execute
    object.__setattr__(flows.stage_a, "execute", cancel_mid_stage)
    try:
        outcome = run_job(h.kernel, job)
    finally:
        object.__setattr__(flows.stage_a, "execute", original)
    assert outcome.ghost is True
    assert h.run(run_id).status == "CANCELLED"
    stage = h.stages(run_id)["a"]
    assert stage.status == "CANCELLED"
    assert stage.output_data is None
    assert h.jobs.get_job(job.id).status == "FAILED"
    assert "stage:completed" not in h.event_types(run_id)
    assert all(s.status != "RUNNING" for s in h.stages(run_id).values())


def test_rerun_from_parallel_stage_reruns_group_and_later(h):
    run_id = h.start("diamond", {"value": 1})
    h.drain()
    a_before = h.stages(run_id)["a"]
    flows.CALLS.clear()
    result = h.dispatch(RerunFrom(run_id, "c"))
    assert sorted(result.deleted_stages) == ["b", "c", "d"]
    h.drain()
    assert dict(flows.CALLS) == {"b": 1, "c": 1, "d": 1}
    run = h.run(run_id)
    assert run.status == "COMPLETED"
    assert run.output == {"total": 2 * 1 + 1 + 2 * 1 + 10, "tags": ["b", "c"]}
    stages = h.stages(run_id)
    assert stages["a"].id == a_before.id
    assert stages["a"].attempt == 0
    assert stages["b"].attempt == stages["c"].attempt == stages["d"].attempt == 1


def test_rerun_errors_write_nothing(h):
    run_id = h.start("diamond", {"value": 1})
    with pytest.raises(InvalidRunState, match="RUNNING"):
        h.dispatch(RerunFrom(run_id, "a"))
    h.drain()
    with pytest.raises(StageNotFound, match="'nope'"):
        h.dispatch(RerunFrom(run_id, "nope"))
    assert h.run(run_id).status == "COMPLETED"
    assert len(h.stages(run_id)) == 4


def test_transition_is_noop_for_finished_or_missing_runs(h):
    assert h.dispatch(TransitionRun("missing")).action == "noop"
    run_id = h.start("diamond", {"value": 1})
    h.drain()
    assert h.dispatch(TransitionRun(run_id)).action == "noop"


def test_completed_stage_is_not_executed_twice(h):
    run_id = h.start("diamond", {"value": 1})
    job = h.jobs.dequeue("w", h.clock.now())
    from django_workflow_engine.kernel import ExecuteJob

    first = h.dispatch(ExecuteJob(run_id, "diamond", "a"))
    second = h.dispatch(ExecuteJob(run_id, "diamond", "a"))
    assert first.outcome == second.outcome == "completed"
    assert second.output == {"value": 2}
    assert flows.CALLS["a"] == 1
    assert job is not None


def test_a_job_delivered_for_a_completed_stage_is_settled_without_running_it_again(h):
    from django_workflow_engine.kernel import ExecuteJob, run_job

    run_id = h.start("diamond", {"value": 1})
    job = h.jobs.dequeue("w", h.clock.now())
    h.dispatch(ExecuteJob(run_id, "diamond", "a"))  # the stage completes, its job is left RUNNING
    outcome = run_job(h.kernel, job)
    assert (outcome.outcome, outcome.transition) == ("completed", "advanced")
    assert flows.CALLS["a"] == 1
    following = h.jobs.dequeue("w", h.clock.now())  # the job settled, the next group queued
    assert following.stage_id in ("b", "c")
    assert run_job(h.kernel, following).outcome == "completed"
    assert h.drain().completed == 2
    assert h.run(run_id).status == "COMPLETED"


def test_dead_lettered_events_are_delivered_at_the_flush_after_a_replay(h):
    run_id = h.create("diamond", {"value": 1})
    h.sink.fail_times = 3  # the receiver is broken for three deliveries: the event is dead-lettered
    for _ in range(3):
        h.flush()
    assert h.sink.events == []
    assert h.flush().published == 0
    assert h.dispatch(ReplayDeadLetters(max_events=10)).replayed == 1
    h.flush()
    assert [(e["type"], e["workflow_run_id"]) for e in h.sink.events] == [("workflow:created", run_id)]
    assert h.dispatch(ReplayDeadLetters(max_events=10)).replayed == 0


def _drain_until_finished(h, run_id):
    for _ in range(10):
        h.drain()
        if h.run(run_id).status in ("COMPLETED", "FAILED"):
            return h.run(run_id)
        h.clock.advance(seconds=60)  # retries back off
    raise AssertionError(f"run {run_id} did not finish: {h.run(run_id).status}")


def test_rerun_keeps_the_failed_generation_as_history(h):
    flows.FAIL["d"] = "RateLimitError: slow down"
    run_id = h.start("diamond", {"value": 1})
    first = _drain_until_finished(h, run_id)
    assert first.status == "FAILED"
    failed = h.stages(run_id)["d"]
    assert (failed.status, failed.error_message) == ("FAILED", "RuntimeError: RateLimitError: slow down")
    flows.FAIL.clear()
    rerun_at = h.clock.advance(seconds=5)
    result = h.dispatch(RerunFrom(run_id, "d", actor="alice"))
    assert result.deleted_stages == ["d"]
    run = _drain_until_finished(h, run_id)
    assert run.status == "COMPLETED"
    assert run.started_at == first.started_at  # the first start; the rerun does not move it
    assert run.duration_ms == int((run.completed_at - first.started_at).total_seconds() * 1000)
    # "the stages of the run" are the current generation: one record per stage
    current = h.stages(run_id)
    assert current["d"].status == "COMPLETED"
    assert current["d"].attempt == 1
    assert current["d"].id != failed.id
    # the failed record is kept, read-only, with its error, timings and who replaced it
    history = [s for s in h.persistence.get_stage_history(run_id) if s.stage_id == "d"]
    assert [(s.attempt, s.status) for s in history] == [(0, "FAILED"), (1, "COMPLETED")]
    old = history[0]
    assert old.id == failed.id
    assert (old.error_message, old.started_at, old.completed_at) == (
        failed.error_message,
        failed.started_at,
        failed.completed_at,
    )
    assert (old.superseded_at, old.superseded_by) == (rerun_at, "alice")
    # its ERROR log lines survive, still attributed to the failed record
    errors = [log for log in h.logs(run_id) if log.level == "ERROR"]
    assert errors
    assert {log.stage_pk for log in errors} == {failed.id}
    # with the traceback of what was raised, one ERROR line per delivery of the failing job
    assert len(errors) == 3
    assert "raise RuntimeError(FAIL[stage_id])" in errors[-1].metadata["traceback"]
    assert errors[-1].metadata["traceback"].rstrip().endswith("RuntimeError: RateLimitError: slow down")
    started = [e for e in h.persistence.get_events(run_id) if e.event_type == "workflow:started"]
    assert started[-1].payload["actor"] == "alice"
    assert started[-1].payload["attempt"] == 1


def test_rerun_cost_counts_every_generation(h):
    run_id = h.start("diamond", {"value": 1})
    h.drain()
    assert h.run(run_id).total_cost == Decimal("0.25")  # stage d reports total_cost 0.25
    h.dispatch(RerunFrom(run_id, "d"))
    assert h.run(run_id).total_cost == Decimal("0.25")  # what was spent stays spent
    h.drain()
    run = h.run(run_id)
    assert run.status == "COMPLETED"
    assert (run.total_cost, run.total_tokens) == (Decimal("0.50"), 60)


@pytest.mark.parametrize("actor", ["x" * 201, "al\x00ice", "", 42])
def test_rerun_refuses_a_bad_actor_and_writes_nothing(h, actor):
    from django_workflow_engine.errors import ValidationFailed

    run_id = h.start("diamond", {"value": 1})
    h.drain()
    before = h.run(run_id)
    with pytest.raises(ValidationFailed, match="'actor' must be a non-empty string of at most 200 characters"):
        h.dispatch(RerunFrom(run_id, "d", actor=actor))
    assert h.run(run_id).version == before.version
    assert all(s.superseded_at is None for s in h.persistence.get_stage_history(run_id))
