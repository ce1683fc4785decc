"""Cost queries (one SQL query each) and ``manage.py aicosts`` on a fixture of calls across models,
workflows and days."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_workflow_engine.models import AICall, WorkflowRun, WorkflowStage

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
TODAY = NOW.date()
YESTERDAY = TODAY - timedelta(days=1)


def _run(workflow_id: str) -> WorkflowRun:
    return WorkflowRun.objects.create(
        created_at=NOW,
        updated_at=NOW,
        workflow_id=workflow_id,
        workflow_name=workflow_id,
        workflow_type=workflow_id,
        input={},
    )


def _stage(run: WorkflowRun, stage_id: str) -> WorkflowStage:
    return WorkflowStage.objects.create(
        created_at=NOW,
        updated_at=NOW,
        run=run,
        stage_id=stage_id,
        stage_name=stage_id,
        stage_number=1,
        execution_group=1,
    )


def _call(when, model, cost, run=None, stage=None, tokens=(10, 20), error=None):
    return AICall.objects.create(
        created_at=when,
        topic="t",
        call_type="text",
        model_key=model,
        model_id=model,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cost=None if cost is None else Decimal(cost),
        run=run,
        stage=stage,
        workflow_id=run.workflow_id if run is not None else None,
        stage_key=stage.stage_id if stage is not None else None,
        error=error,
    )


@pytest.fixture
def calls():
    docs, mail = _run("docs"), _run("mail")
    summarize, classify, send = _stage(docs, "summarize"), _stage(docs, "classify"), _stage(mail, "send")
    _call(NOW, "gpt-4o-mini", "0.0000135", docs, summarize)
    _call(NOW, "gpt-4o-mini", "0.0000135", docs, classify)
    _call(NOW - timedelta(days=1), "fake-model", "0.00005", docs, summarize, tokens=(100, 50))
    _call(NOW - timedelta(days=1), "openai/private", None, mail, send)  # unpriced
    _call(NOW - timedelta(hours=1), "fake-model", "0", mail, send, tokens=(0, 0), error="RateLimitError: slow")
    _call(NOW - timedelta(days=30), "gpt-4o-mini", "1", None, None)  # old and outside any run
    return {"docs": docs, "mail": mail}


def test_totals(calls, django_assert_num_queries):
    with django_assert_num_queries(1):
        totals = AICall.objects.totals()
    assert totals == {
        "calls": 6,
        "input_tokens": 140,
        "output_tokens": 130,
        "cached_tokens": 0,
        "cost": Decimal("1.0000770"),
        "unpriced": 1,
        "errors": 1,
        "cache_hits": 0,
        "saved": Decimal(0),
    }


def test_for_run_and_for_workflow(calls, django_assert_num_queries):
    with django_assert_num_queries(1):
        run_totals = AICall.objects.for_run(calls["docs"]).totals()
    assert (run_totals["calls"], run_totals["cost"]) == (3, Decimal("0.000077"))
    with django_assert_num_queries(1):
        mail = AICall.objects.for_workflow("mail").totals()
    assert (mail["calls"], mail["cost"], mail["unpriced"]) == (2, Decimal(0), 1)
    assert AICall.objects.for_run(calls["mail"].id).count() == 2


def test_between(calls, django_assert_num_queries):
    with django_assert_num_queries(1):
        recent = list(AICall.objects.between(NOW - timedelta(days=2), NOW + timedelta(seconds=1)))
    assert len(recent) == 5
    assert AICall.objects.between(end=NOW - timedelta(days=2)).count() == 1
    assert AICall.objects.between(start=NOW - timedelta(minutes=1)).count() == 2


def test_by_model(calls, django_assert_num_queries):
    with django_assert_num_queries(1):
        rows = list(AICall.objects.by_model())
    assert [(r["model_id"], r["calls"], r["cost"], r["unpriced"]) for r in rows] == [
        ("fake-model", 2, Decimal("0.00005"), 0),
        ("gpt-4o-mini", 3, Decimal("1.000027"), 0),
        ("openai/private", 1, Decimal(0), 1),
    ]


def test_by_workflow(calls, django_assert_num_queries):
    with django_assert_num_queries(1):
        rows = list(AICall.objects.between(NOW - timedelta(days=7)).by_workflow())
    assert [(r["workflow_id"], r["calls"], r["input_tokens"], r["cost"]) for r in rows] == [
        ("docs", 3, 120, Decimal("0.000077")),
        ("mail", 2, 10, Decimal(0)),
    ]


def test_by_stage(calls, django_assert_num_queries):
    with django_assert_num_queries(1):
        rows = list(AICall.objects.by_stage())
    assert [(r["workflow_id"], r["stage_name"], r["calls"], r["cost"]) for r in rows] == [
        ("docs", "classify", 1, Decimal("0.0000135")),
        ("docs", "summarize", 2, Decimal("0.0000635")),
        ("mail", "send", 2, Decimal(0)),
        (None, None, 1, Decimal(1)),
    ]


def test_by_day(calls, django_assert_num_queries):
    with django_assert_num_queries(1):
        rows = list(AICall.objects.between(NOW - timedelta(days=7)).by_day())
    by_day = {r["day"]: (r["calls"], r["cost"]) for r in rows}
    assert all(isinstance(d, date) for d in by_day)
    assert sum(c for c, _ in by_day.values()) == 5
    assert by_day[TODAY] == (3, Decimal("0.000027"))
    assert by_day[YESTERDAY] == (2, Decimal("0.00005"))


def test_queries_chain_with_filters(calls):
    rows = list(AICall.objects.for_workflow("docs").between(NOW - timedelta(hours=2)).by_model())
    assert [(r["model_id"], r["calls"]) for r in rows] == [("gpt-4o-mini", 2)]


def _command(*args):
    out = io.StringIO()
    call_command("aicosts", *args, stdout=out)
    return out.getvalue()


def test_aicosts_table_by_model(calls):
    text = _command("--since", "7d")
    lines = text.splitlines()
    assert lines[0].split() == ["model_id", "calls", "input_tokens", "output_tokens", "cost", "unpriced", "errors"]
    assert lines[2].split() == ["fake-model", "2", "100", "50", "0.00005", "0", "1"]
    assert lines[3].split() == ["gpt-4o-mini", "2", "20", "40", "0.000027", "0", "0"]
    assert lines[4].split() == ["openai/private", "1", "10", "20", "0", "1", "0"]
    assert lines[6].split() == ["TOTAL", "5", "130", "110", "0.000077", "1", "1"]
    assert lines[-1] == "1 call(s) have no known price; their cost is not included."


def test_aicosts_csv_by_stage(calls):
    rows = list(csv.reader(io.StringIO(_command("--by", "stage", "--format", "csv", "--since", "2d"))))
    assert rows == [
        ["workflow_id", "stage_name", "calls", "input_tokens", "output_tokens", "cost", "unpriced", "errors"],
        ["docs", "classify", "1", "10", "20", "0.0000135", "0", "0"],
        ["docs", "summarize", "2", "110", "70", "0.0000635", "0", "0"],
        ["mail", "send", "2", "10", "20", "0", "1", "1"],
    ]


def test_aicosts_json_by_day_and_workflow_filter(calls):
    data = json.loads(_command("--by", "day", "--format", "json", "--since", "30d", "--workflow", "docs"))
    assert data["by"] == "day"
    days = {r["day"]: r for r in data["rows"]}
    assert days[YESTERDAY.isoformat()]["cost"] == "0.00005"
    assert days[TODAY.isoformat()]["cost"] == "0.000027"
    assert data["totals"] == {
        "calls": "3",
        "input_tokens": "120",
        "output_tokens": "90",
        "cost": "0.000077",
        "unpriced": "0",
        "errors": "0",
    }


def test_aicosts_by_workflow_includes_calls_outside_runs(calls):
    rows = list(csv.reader(io.StringIO(_command("--by", "workflow", "--format", "csv", "--since", "60d"))))
    assert [r[:3] for r in rows[1:]] == [["docs", "3", "120"], ["mail", "2", "10"], ["-", "1", "10"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "7x"], "argument --since: '7x' is not a duration: use a positive number and a unit"),
        (["--since", "0d"], "argument --since: '0d' is not a duration"),
        (["--since", "99999999d"], "argument --since: '99999999d' is too long: the longest window is 36500d"),
        (["--since", "99999999999999999999w"], "argument --since: '99999999999999999999w' is too long"),
        (["--since", "52560001m"], "argument --since: '52560001m' is too long"),
        (["--by", "color"], "argument --by: invalid choice: 'color'"),
        (["--format", "xml"], "argument --format: invalid choice: 'xml'"),
    ],
)
def test_aicosts_rejects_bad_arguments_in_one_line(args, message):
    with pytest.raises(CommandError) as info:
        call_command("aicosts", *args)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_aicosts_accepts_the_longest_window(calls):
    assert _command("--since", "36500d", "--format", "csv").splitlines()[0].startswith("model_id,")
    assert _command("--since", "52560000m", "--format", "csv").splitlines()[0].startswith("model_id,")


def test_aicosts_usage_error_from_the_command_line_is_one_line_and_exit_2():
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(root)}
    result = subprocess.run(
        [sys.executable, "-m", "django", "aicosts", "--since", "99999999d"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert errors[0].endswith(
        "error: argument --since: '99999999d' is too long: the longest window is 36500d (100 years)"
    )
    assert result.stdout == ""


def test_aicosts_csv_neutralizes_spreadsheet_formulas(calls):
    hostile = _run('=HYPERLINK("http://evil.example","x")')
    stage = _stage(hostile, "@SUM(A1:A9)")
    _call(NOW, "+cmd|' /C calc'!A0", "0.5", hostile, stage)
    _call(NOW, "-2+3", "0.25", hostile, stage)
    by_model = {r[0]: r for r in csv.reader(io.StringIO(_command("--format", "csv", "--since", "1d")))}
    assert "'+cmd|' /C calc'!A0" in by_model
    assert by_model["'-2+3"][1:] == ["1", "10", "20", "0.25", "0", "0"]
    assert "gpt-4o-mini" in by_model  # ordinary ids are untouched
    rows = list(csv.reader(io.StringIO(_command("--by", "stage", "--format", "csv", "--since", "1d"))))
    assert ['\'=HYPERLINK("http://evil.example","x")', "'@SUM(A1:A9)", "2", "20", "40", "0.75"] in [r[:6] for r in rows]
    assert not any(cell[:1] in "=+-@" for row in rows for cell in row if cell != "-")
