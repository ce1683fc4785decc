"""``manage.py runs``: list / show / cancel / rerun / logs through call_command, with the facade's semantics."""

from __future__ import annotations

import io
import json
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from django_workflow_engine import engine
from django_workflow_engine.models import AICall, WorkflowLog, WorkflowRun
from tests import flows

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _reset_flows():
    flows.reset()
    yield
    flows.reset()


def runs(*args: str) -> str:
    out = io.StringIO()
    call_command("runs", *args, stdout=out)
    return out.getvalue()


def _finished(value: int = 5) -> WorkflowRun:
    run = engine.start("diamond", {"value": value})
    engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    return run


def test_list_filters_and_json():
    done = _finished()
    old = _finished(7)
    pending = engine.start("diamond", {"value": 2})
    WorkflowRun.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))

    rows = json.loads(runs("list", "--json"))
    assert [r["id"] for r in rows] == [pending.id, done.id, old.id]
    assert rows[1]["status"] == "COMPLETED"
    assert rows[1]["workflow_id"] == "diamond"

    assert pending.status == "RUNNING"  # started: its first stage is queued
    assert [r["id"] for r in json.loads(runs("list", "--status", "running", "--json"))] == [pending.id]
    assert [r["id"] for r in json.loads(runs("list", "--status", "COMPLETED,RUNNING", "--since", "1d", "--json"))] == [
        pending.id,
        done.id,
    ]
    assert json.loads(runs("list", "--workflow", "triple", "--json")) == []
    assert [r["id"] for r in json.loads(runs("list", "--limit", "1", "--json"))] == [pending.id]

    table = runs("list").splitlines()
    assert table[0].split() == ["run", "workflow", "status", "created", "duration", "cost", "tokens"]
    assert table[1].startswith("---")
    assert len(table) == 5
    assert table[2].split()[:3] == [pending.id, "diamond", "RUNNING"]
    assert "No runs." in runs("list", "--workflow", "nope")


def test_show_stages_logs_and_cost():
    run = _finished()
    AICall.objects.create(
        created_at=timezone.now(),
        topic="t",
        call_type="text",
        model_key="m",
        model_id="m",
        input_tokens=120,
        output_tokens=30,
        cost=Decimal("0.0125"),
        run=run,
        workflow_id="diamond",
        stage_key="a",
    )
    data = json.loads(runs("show", run.id, "--json"))
    assert data["id"] == run.id
    assert data["status"] == "COMPLETED"
    assert [(s["stage_id"], s["status"]) for s in data["stages"]] == [
        ("a", "COMPLETED"),
        ("b", "COMPLETED"),
        ("c", "COMPLETED"),
        ("d", "COMPLETED"),
    ]
    assert [(line["stage_id"], line["message"]) for line in data["logs"]][:1] == [("a", "doubling")]
    assert data["ai"]["calls"] == 1
    assert Decimal(data["ai"]["cost"]) == Decimal("0.0125")
    assert data["output"] == {"total": 31, "tags": ["b", "c"]}  # (5 * 2 + 1) + (5 * 2 + 10)

    text = runs("show", run.id)
    assert text.startswith(f"Run {run.id}  diamond  COMPLETED")
    assert "AI: 1 call(s), 120 in / 30 out tokens, cost $0.0125" in text
    assert "INFO  [a] doubling" in text
    stage_lines = [line.split()[:3] for line in text.splitlines() if line.split()[:1] in (["a"], ["d"])]
    assert stage_lines == [["a", "1", "COMPLETED"], ["d", "3", "COMPLETED"]]


def test_show_limits_the_logs():
    run = _finished()
    WorkflowLog.objects.bulk_create(
        WorkflowLog(created_at=timezone.now() + timedelta(seconds=i), run=run, level="INFO", message=f"line {i}")
        for i in range(30)
    )
    data = json.loads(runs("show", run.id, "--logs", "3", "--json"))
    assert [line["message"] for line in data["logs"]] == ["line 27", "line 28", "line 29"]


def test_cancel_follows_the_facade():
    run = engine.start("diamond", {"value": 2})
    assert runs("cancel", run.id, "--reason", "not needed").strip() == f"Cancelled run {run.id}"
    run.refresh_from_db()
    assert run.status == "CANCELLED"
    # cancelling a finished run is not an error for the engine: it says so and changes nothing
    assert json.loads(runs("cancel", run.id, "--json")) == {"id": run.id, "cancelled": False, "status": "CANCELLED"}
    done = _finished()
    assert runs("cancel", done.id).strip() == f"Run {done.id} is already COMPLETED: nothing to cancel"


def test_rerun_from_a_stage():
    run = _finished()
    before = flows.CALLS.copy()
    assert runs("rerun", run.id, "--from", "d").startswith(f"Rerunning run {run.id} from stage d")
    engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert flows.CALLS["d"] == before["d"] + 1
    assert flows.CALLS["a"] == before["a"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "0" * 32], "run '00000000000000000000000000000000' not found"),
        (["show", "x" * 500], "not found"),
        (["cancel", "nope"], "run 'nope' not found"),
        (["logs", "nope"], "run 'nope' not found"),
        (["list", "--status", "DONE"], "--status 'DONE' is not a run status"),
    ],
)
def test_bad_ids_and_arguments_are_one_line_errors_with_status_2(args, message):
    with pytest.raises(CommandError) as info:
        runs(*args)
    assert message in str(info.value)
    assert info.value.returncode == 2


def test_rerun_errors_come_from_the_engine_and_write_nothing():
    pending = engine.start("diamond", {"value": 2})
    with pytest.raises(CommandError) as info:
        runs("rerun", pending.id, "--from", "a")
    assert info.value.returncode == 2
    assert "it is RUNNING; it must be one of COMPLETED, FAILED" in str(info.value)
    done = _finished()
    with pytest.raises(CommandError, match="'zz'") as info:
        runs("rerun", done.id, "--from", "zz")
    assert info.value.returncode == 2
    done.refresh_from_db()
    assert done.status == "COMPLETED"


def test_logs_prints_every_line_and_json_lines():
    run = _finished()
    text = runs("logs", run.id).splitlines()
    assert any(line.endswith("INFO  [a] doubling") for line in text)
    lines = [json.loads(line) for line in runs("logs", run.id, "--json").splitlines()]
    assert (lines[0]["stage_id"], lines[0]["level"], lines[0]["message"]) == ("a", "INFO", "doubling")
    assert [line["id"] for line in lines] == list(
        WorkflowLog.objects.filter(run=run).order_by("created_at", "id").values_list("id", flat=True)
    )


def test_logs_follow_prints_new_lines_until_the_run_ends():
    run = engine.start("diamond", {"value": 3})
    out = io.StringIO()
    errors: list[BaseException] = []

    def follow() -> None:
        try:
            call_command("runs", "logs", run.id, "--follow", "--interval", "0.05", stdout=out)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            from django.db import connection

            connection.close()

    thread = threading.Thread(target=follow)
    thread.start()
    try:
        assert out.getvalue() == ""
        engine.run_until_idle()
        thread.join(timeout=30)
    finally:
        flows.reset()
    assert not thread.is_alive(), "--follow did not stop when the run finished"
    assert errors == []
    assert "INFO  [a] doubling" in out.getvalue()
