"""pytest plugin (entry point ``pytest11``): fixtures for testing workflows.

* ``fake_clock``: a :class:`~django_workflow_engine.kernel.testing.FakeClock`.
* ``memory_harness``: a factory ``memory_harness(workflows)`` -> :class:`MemoryHarness` using ``fake_clock``.
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def fake_clock() -> Any:
    from ..kernel.testing import FakeClock

    return FakeClock()


@pytest.fixture
def memory_harness(fake_clock: Any) -> Any:
    from . import MemoryHarness

    def make(workflows: Any = (), **kwargs: Any) -> MemoryHarness:
        kwargs.setdefault("clock", fake_clock)
        return MemoryHarness(workflows, **kwargs)

    return make
