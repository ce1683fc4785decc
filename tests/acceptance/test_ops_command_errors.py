"""``runs`` and ``purgeruns`` as real processes: a bad id or argument is one line on stderr, exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.acceptance, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["runs", "show", "0123456789abcdef0123456789abcdef"],
            "CommandError: run '0123456789abcdef0123456789abcdef' not found",
        ),
        (["runs", "rerun", "nope", "--from", "a"], "CommandError: run 'nope' not found"),
        (
            ["purgeruns", "--older-than", "30d", "--status", "RUNNING"],
            "CommandError: --status: 'RUNNING' cannot be purged",
        ),
    ],
)
def test_bad_ids_are_one_line_errors_with_exit_status_2(processes, args, message):
    proc = processes.start(*args, name=args[0])
    assert proc.wait(timeout=60) == 2
    out = Path(proc.log_path).read_text()
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert lines[0].startswith(message), out
