"""The production clock: aware UTC ``datetime.now``. Tests use :class:`~django_workflow_engine.kernel.clock.FakeClock`."""

from __future__ import annotations

from ..kernel.clock import SystemClock

__all__ = ["SystemClock"]
