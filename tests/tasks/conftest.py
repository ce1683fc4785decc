"""Tasks tests: a fresh directory for the counters the task functions write."""

from __future__ import annotations

import pytest

from .jobs import COUNTER_DIR


@pytest.fixture(autouse=True)
def task_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(COUNTER_DIR, str(tmp_path))
    return tmp_path
