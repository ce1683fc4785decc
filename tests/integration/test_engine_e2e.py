"""End to end through the public API on the ORM (SQLite, and PostgreSQL in the DATABASE_URL pass)."""

from __future__ import annotations

import io
import json
import threading

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from django_workflow_engine import engine
from django_workflow_engine.errors import InvalidConfig, InvalidInput, InvalidRunState, StageNotFound, WorkflowNotFound
from django_workflow_engine.models import OutboxEvent, WorkflowJob, WorkflowLog, WorkflowRun, WorkflowStage
from tests import flows


@pytest.fixture(autouse=True)
def _reset():
    flows.reset()
    yield
    flows.reset()


pytestmark = pytest.mark.django_db


def test_diamond_runs_to_completion():
    run = engine.start("diamond", {"value": 5})
    assert run.status == "RUNNING"
    engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert run.output == {"total": 31, "tags": ["b", "c"]}
    assert run.total_tokens == 30
    assert str(run.total_cost.normalize()) == "0.25"
    assert run.duration_ms is not None
    stages = {s.stage_id: s for s in run.stages.all()}
    assert {k: (s.status, s.execution_group) for k, s in stages.items()} == {
        "a": ("COMPLETED", 1),
        "b": ("COMPLETED", 2),
        "c": ("COMPLETED", 2),
        "d": ("COMPLETED", 3),
    }
    assert dict(flows.CALLS) == {"a": 1, "b": 1, "c": 1, "d": 1}
    assert set(WorkflowJob.objects.filter(run=run).values_list("status", flat=True)) == {"COMPLETED"}
    log = WorkflowLog.objects.get(run=run)
    assert (log.level, log.message, log.metadata, log.stage_id) == ("INFO", "doubling", {"value": 5}, stages["a"].pk)
    events = list(OutboxEvent.objects.filter(run_id=run.id).order_by("sequence"))
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[0].event_type == "workflow:created"
    assert events[-1].event_type == "workflow:completed"
    assert events[-1].payload["output"] == {"total": 31, "tags": ["b", "c"]}
    assert all(e.published_at is not None for e in events)


def test_artifacts_are_stored_in_blob_storage():
    run = engine.start("diamond", {"value": 1})
    engine.run_until_idle()
    d = WorkflowStage.objects.get(run=run, stage_id="d")
    key = d.output_data["artifact_keys"]["summary"]
    assert engine.kernel.deps.blobs.get(key) == {"lines": 2}


def test_failing_stage_fails_the_run_with_its_error():
    flows.FAIL["b"] = "upstream timeout"
    run = engine.start("diamond", {"value": 1})
    engine.run_until_idle()  # RETRY_BASE_SECONDS is 0 in the test settings: retries are due at once
    run.refresh_from_db()
    assert run.status == "FAILED"
    assert run.output["error"]["message"] == "RuntimeError: upstream timeout"
    assert WorkflowStage.objects.get(run=run, stage_id="b").error_message == "RuntimeError: upstream timeout"
    assert not WorkflowStage.objects.filter(run=run, stage_id="d").exists()
    assert WorkflowJob.objects.get(run=run, stage_id="b").attempt == 3


def test_invalid_input_creates_no_row():
    with pytest.raises(InvalidInput, match="field 'value'"):
        engine.start("diamond", {"value": "x"})
    with pytest.raises(InvalidConfig, match="stage 'a'"):
        engine.start("diamond", {"value": 1}, config={"a": {"factor": "lots"}})
    with pytest.raises(WorkflowNotFound):
        engine.start("no-such-workflow", {})
    assert WorkflowRun.objects.count() == 0
    assert OutboxEvent.objects.count() == 0


def test_rerun_from_c_reruns_its_group_and_d_keeping_a():
    run = engine.start("diamond", {"value": 1})
    engine.run_until_idle()
    a = WorkflowStage.objects.get(run=run, stage_id="a")
    flows.CALLS.clear()
    engine.rerun_from(run.id, "c")
    engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert dict(flows.CALLS) == {"b": 1, "c": 1, "d": 1}
    assert WorkflowStage.objects.get(run=run, stage_id="a").pk == a.pk
    assert sorted(WorkflowStage.objects.filter(run=run).values_list("stage_id", "attempt")) == [
        ("a", 0),
        ("b", 1),
        ("c", 1),
        ("d", 1),
    ]


def test_rerun_errors_write_nothing():
    run = engine.start("diamond", {"value": 1})
    with pytest.raises(InvalidRunState):
        engine.rerun_from(run.id, "c")
    engine.run_until_idle()
    with pytest.raises(StageNotFound):
        engine.rerun_from(run.id, "zzz")
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert WorkflowStage.objects.filter(run=run).count() == 4


@pytest.mark.django_db(transaction=True)
def test_cancel_while_a_stage_runs_discards_the_late_result():
    gate = flows.GATES["a"] = threading.Event()
    run = engine.start("diamond", {"value": 1})
    worker = threading.Thread(target=_drain_and_close)
    worker.start()
    try:
        for _ in range(200):
            if WorkflowStage.objects.filter(run=run, stage_id="a", status="RUNNING").exists():
                break
            threading.Event().wait(0.05)
        assert engine.cancel(run.id, reason="changed my mind") is True
    finally:
        gate.set()
        worker.join(30)
    run.refresh_from_db()
    assert run.status == "CANCELLED"
    assert not WorkflowStage.objects.filter(run=run, status="RUNNING").exists()
    a = WorkflowStage.objects.get(run=run, stage_id="a")
    assert a.status == "CANCELLED"
    assert a.output_data is None
    assert not WorkflowStage.objects.filter(run=run, stage_id="b").exists()
    assert not WorkflowJob.objects.filter(run=run, status__in=["PENDING", "RUNNING"]).exists()
    assert not OutboxEvent.objects.filter(run_id=run.id, event_type="stage:completed").exists()


def _drain_and_close():
    try:
        engine.run_until_idle()
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_async_stage_logs_are_stored_and_none_input_is_accepted():
    from django_workflow_engine import WorkflowBuilder, define_stage
    from django_workflow_engine.registry import registry

    @define_stage(id="talk", name="Talk")
    async def talk(ctx):
        ctx.log("INFO", "from async", n=1)
        return {"ok": True}

    flow = WorkflowBuilder("async-logs", "Async logs").pipe(talk).build()
    registry.register(flow)
    try:
        run = engine.start("async-logs", None)
        engine.run_until_idle()
        run.refresh_from_db()
        assert run.status == "COMPLETED"
        assert run.input == {}
        assert list(WorkflowLog.objects.filter(run=run).values_list("message", flat=True)) == ["from async"]
    finally:
        registry.unregister("async-logs")


def test_wait_shows_each_poll_and_returns_the_finished_run():
    run = engine.start("diamond", {"value": 5})
    seen = []

    def on_poll(polled):
        seen.append(polled.status)
        if len(seen) == 1:
            engine.run_until_idle()  # another process does the work between two polls

    finished = engine.wait(run.id, timeout=30, poll_interval=0.01, on_poll=on_poll)
    assert (finished.pk, finished.status) == (run.pk, "COMPLETED")
    assert seen == ["RUNNING", "COMPLETED"]
    with pytest.raises(TimeoutError, match=r"still RUNNING after 0\.05 s"):
        engine.wait(engine.start("diamond", {"value": 1}).id, timeout=0.05, poll_interval=0.01)


def test_startrun_shows_progress_through_engine_wait():
    out = io.StringIO()
    call_command("startrun", "diamond", "--input", '{"value": 2}', "--inline", stdout=out)
    lines = out.getvalue().splitlines()
    run = WorkflowRun.objects.get()
    assert lines[0] == f"Started run {run.id} of diamond"
    progress = [line for line in lines if line.startswith("[")]
    assert progress[-1].startswith("[####] 4/4  ")
    assert len(progress) == len(set(progress))  # a stage's status is shown once per change
    status_line = lines.index(f"Run {run.id} COMPLETED")
    assert json.loads("\n".join(lines[status_line + 1 :])) == run.output
    with pytest.raises(CommandError, match=r"still RUNNING after 0\.05 s"):
        call_command("startrun", "diamond", "--input", '{"value": 2}', "--wait", "--timeout", "0.05", stdout=out)
