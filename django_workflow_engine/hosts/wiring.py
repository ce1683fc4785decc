"""The kernel a host runs on when its caller gives none.

Hosts are given a kernel (``Worker(kernel=...)``, ``run_maintenance_tick(kernel)``, ``handle_job(message,
kernel=...)``). Entry points that cannot be given one, such as the RQ job function (RQ calls it with a job id
only) or a serverless handler, use the one the package's engine provides: ``django_workflow_engine.facade``
registers it when the package is imported, so no host imports the engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..kernel import Kernel

_source: Callable[[], Kernel] | None = None


def provide_kernel(source: Callable[[], Kernel]) -> None:
    """Make ``source()`` the kernel of hosts given none (called once, by the package's engine)."""
    global _source
    _source = source


def default_kernel(kernel: Kernel | None = None) -> Kernel:
    """``kernel`` if given, else the provided one (asked each time: the engine rebuilds its kernel after a
    settings change)."""
    if kernel is not None:
        return kernel
    if _source is None:
        raise RuntimeError("No kernel: pass kernel=..., or import django_workflow_engine (its engine provides one).")
    return _source()
