"""The engine's log records carry run_id, workflow_id, stage_id and attempt as ``extra`` fields, and the JSON
formatter writes them."""

from __future__ import annotations

import json
import logging

import pytest

from django_workflow_engine import engine
from django_workflow_engine.ops.jsonlog import JSONFormatter
from tests import flows

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _reset_flows():
    flows.reset()
    yield
    flows.reset()


def _stage_records(caplog, run_id: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "run_id", None) == run_id]


def test_stage_outcome_records_carry_the_run_workflow_stage_and_attempt(caplog):
    caplog.set_level(logging.INFO, logger="django_workflow_engine")
    run = engine.start("diamond", {"value": 3})
    engine.run_until_idle()
    records = _stage_records(caplog, run.id)
    assert sorted((r.workflow_id, r.stage_id, r.attempt) for r in records) == [
        ("diamond", "a", 1),
        ("diamond", "b", 1),
        ("diamond", "c", 1),
        ("diamond", "d", 1),
    ]
    assert all(r.name == "django_workflow_engine.worker" for r in records)


def test_a_retry_is_logged_with_its_attempt(caplog, settings):
    settings.WORKFLOW_ENGINE = {"RETRY_BASE_SECONDS": 0}
    caplog.set_level(logging.INFO, logger="django_workflow_engine")
    flows.FAIL["b"] = "flaky upstream"
    run = engine.start("diamond", {"value": 3})
    engine.run_until_idle(max_jobs=3)  # a, then b fails once (c may run in between)
    failed = [r for r in _stage_records(caplog, run.id) if r.stage_id == "b"]
    assert failed
    assert (failed[0].levelname, failed[0].attempt) == ("WARNING", 1)

    line = json.loads(JSONFormatter().format(failed[0]))
    assert {k: line[k] for k in ("level", "logger", "run_id", "workflow_id", "stage_id", "attempt")} == {
        "level": "WARNING",
        "logger": "django_workflow_engine.worker",
        "run_id": run.id,
        "workflow_id": "diamond",
        "stage_id": "b",
        "attempt": 1,
    }
    assert "flaky upstream" in line["message"]


def test_json_formatter_on_other_records_and_exceptions():
    record = logging.LogRecord("app", logging.ERROR, __file__, 1, "boom %s", ("now",), None)
    record.request_id = "r-1"
    assert json.loads(JSONFormatter(fields=["request_id"]).format(record)) == {
        "time": json.loads(JSONFormatter().format(record))["time"],
        "level": "ERROR",
        "logger": "app",
        "message": "boom now",
        "request_id": "r-1",
    }
    try:
        raise ValueError("bad")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert "ValueError: bad" in json.loads(JSONFormatter().format(record))["exc_info"]
