"""pytest plugin (entry point ``pytest11``, active wherever the package is installed): fixtures for testing
workflows.

* ``fake_clock``: a :class:`~django_workflow_engine.kernel.clock.FakeClock`; ``fake_clock.advance(seconds=30)``.
* ``memory_harness``: a factory ``memory_harness(workflows, **options)`` -> :class:`MemoryHarness` on the in-memory
  adapters, using ``fake_clock``. No database.
* ``workflow_runner``: a :class:`WorkflowRunner` on the ORM: ``workflow_runner(workflow, input)`` starts a run
  with the global ``engine``, drains it with ``engine.run_until_idle()`` and returns the refreshed ``WorkflowRun``.
  Requests the ``db`` fixture.
* ``fake_clock_engine``: an ``Engine(clock=fake_clock)`` on the ORM, for stepping time through suspend/poll and
  retry backoff; ``fake_clock`` is first moved to the current wall-clock time. Requests the ``db`` fixture.
* ``fake_clock_runner``: a :class:`WorkflowRunner` over ``fake_clock_engine``.
* ``mock_ai``: an active :class:`~django_workflow_engine.testing.MockAI`: script replies with
  ``mock_ai.text(...)``, ``mock_ai.object(...)``, ``mock_ai.embedding(...)``; every AI helper call in the test is
  answered by it (through litellm's ``mock_response``, so ``AICall`` rows and costs are recorded) and listed in
  ``mock_ai.calls``. litellm is restored when the test ends.

This module imports nothing from Django at import time (it loads in any pytest session); the fixtures import
what they need.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def fake_clock() -> Any:
    """A clock that moves only when told: ``fake_clock.advance(seconds=30)``, ``fake_clock.set(when)``."""
    from ..kernel.clock import FakeClock

    return FakeClock()


@pytest.fixture
def memory_harness(fake_clock: Any) -> Any:
    """A factory: ``memory_harness([workflow, ...], **options)`` -> a :class:`MemoryHarness` using ``fake_clock``."""
    from . import MemoryHarness

    def make(workflows: Any = (), **kwargs: Any) -> MemoryHarness:
        kwargs.setdefault("clock", fake_clock)
        return MemoryHarness(workflows, **kwargs)

    return make


@pytest.fixture
def workflow_runner(db: Any) -> Iterator[Any]:
    """Run workflows on the test database with the global engine: ``workflow_runner(workflow, input, **opts)``."""
    from . import WorkflowRunner

    runner = WorkflowRunner()
    yield runner
    runner.close()


@pytest.fixture
def fake_clock_engine(db: Any, fake_clock: Any) -> Any:
    """An ``Engine(clock=fake_clock)`` on the test database: time moves only with ``fake_clock.advance(...)``."""
    from datetime import UTC, datetime

    from ..facade import Engine

    # Rows are stamped with the kernel clock; starting at wall time keeps them comparable with the global engine's.
    fake_clock.set(datetime.now(UTC))
    return Engine(clock=fake_clock)


@pytest.fixture
def fake_clock_runner(fake_clock_engine: Any) -> Iterator[Any]:
    """A :class:`WorkflowRunner` over ``fake_clock_engine``."""
    from . import WorkflowRunner

    runner = WorkflowRunner(fake_clock_engine)
    yield runner
    runner.close()


@pytest.fixture
def mock_ai() -> Iterator[Any]:
    """Scripted AI replies for this test: ``mock_ai.text("...")``, ``mock_ai.object({...})``, ``mock_ai.calls``."""
    from .mock_ai import MockAI

    mock = MockAI()
    mock.start()
    yield mock
    mock.stop()
