"""Management commands report bad arguments as one line on stderr with exit status 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]

CASES = [
    (["--metadata", '{"note": "a\\u0000b"}'], "Invalid metadata: field note: contains a NUL"),
    (["--metadata", '{"score": NaN}'], "Invalid metadata: field score: is nan"),
    (["--metadata", '{"n": ' + "9" * 5000 + "}"], None),  # json refuses it first: a usage error, still exit 2
    (["--priority", str(2**40)], "Invalid priority: must be between -2147483648 and 2147483647"),
    (["--max-cost", "1e10"], "Invalid max_cost: must be less than 10000000000"),
    (["--max-cost", "lots"], "Invalid max_cost: must be a number"),
    (["--idempotency-key", "k" * 300], "Invalid idempotency_key: is 300 characters long"),
    (["--input", '{"n": "\\u0000"}'], "Invalid input for workflow 'triple'"),
    (["--config", '{"ingest": {"sped": 1}}'], "stage 'ingest'"),
]


def _output(proc) -> str:
    return Path(proc.log_path).read_text()


@pytest.mark.parametrize(("args", "message"), CASES)
def test_startrun_bad_arguments_are_one_line_errors(processes, args, message):
    proc = processes.start("startrun", "triple", "--input", '{"n": 1}', *args, name="startrun")
    assert proc.wait(timeout=60) == 2, _output(proc)
    out = _output(proc)
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.strip()]
    if message is None:
        assert any("argument --metadata: not valid JSON: Exceeds the limit (4300 digits)" in line for line in lines), (
            out
        )
    else:
        assert len(lines) == 1, out
        assert lines[0].startswith("CommandError: ")
        assert message in lines[0]
    from django_workflow_engine.models import WorkflowRun

    assert not WorkflowRun.objects.exists()


def test_runworker_with_an_undefined_queue_is_a_usage_error(processes):
    proc = processes.start("runworker", "--transport", "rq", "--queues", "workflows,nope", name="worker")
    assert proc.wait(timeout=60) == 2, _output(proc)
    out = _output(proc)
    assert "Traceback" not in out
    assert "CommandError: --queues: nope not defined in RQ_QUEUES (defined: workflows)." in out
