"""The production clock: aware UTC ``datetime.now``. Tests use :class:`~django_workflow_engine.kernel.testing.FakeClock`."""

from __future__ import annotations

from ..kernel.testing import SystemClock

__all__ = ["SystemClock"]
