"""Stage timeouts: interrupting stage code that runs past its ``timeout``.

What happens to a stage past its timeout depends on where it runs:

- ``async def`` stages are cancelled (``asyncio.wait_for``), on any thread.
- ``def`` stages on the main thread of a Unix process (``runworker``, either transport, and the RQ work horse)
  are interrupted by ``SIGALRM``: :class:`~django_workflow_engine.errors.StageTimedOut` is raised inside the
  stage code at its next Python instruction (``time.sleep`` and socket waits are interrupted too; a long call
  into C code that does not return to Python is not).
- Elsewhere (a stage run on another thread, e.g. ``run_until_idle`` called from a thread, or Windows) the code
  cannot be interrupted: the lease keeper stops renewing the job's lease at the deadline, so another worker
  takes the retry once the lease expires, and the result that arrives late is discarded.

An interrupted or late stage fails with "Stage 'x' timed out after N s" and is retried by its retry policy.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..core.errors import RunNotRunning, StageTimedOut
from ..core.stage import run_callable


def can_interrupt() -> bool:
    """Whether a ``def`` stage on this thread can be interrupted by ``SIGALRM``."""
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def call_with_timeout(
    fn: Callable[..., Any],
    arg: Any,
    seconds: float | None,
    stage_id: str,
    stopped: Callable[[], bool] | None = None,
) -> Any:
    """``fn(arg)`` (a ``def`` or ``async def`` stage function), interrupted after ``seconds`` where possible.
    An ``async def`` one is also cancelled once ``stopped()`` (asked every ``WATCH_SECONDS``) says its run
    stopped; it then raises :class:`RunNotRunning`."""
    if inspect.iscoroutinefunction(fn):
        return run_callable(_async_limited(fn, arg, seconds, stage_id, stopped))
    if seconds is None:
        return run_callable(fn, arg)
    if not can_interrupt():
        return run_callable(fn, arg)
    with alarm(seconds, stage_id):
        return run_callable(fn, arg)


WATCH_SECONDS = 1.0


def _async_limited(
    fn: Callable[..., Any], arg: Any, seconds: float | None, stage_id: str, stopped: Callable[[], bool] | None
) -> Callable[[], Any]:
    async def limited() -> Any:
        task = asyncio.ensure_future(fn(arg))
        watcher = asyncio.ensure_future(_watch(task, stopped)) if stopped is not None else None
        try:
            return await asyncio.wait_for(task, seconds)
        except TimeoutError:
            raise StageTimedOut(stage_id, seconds or 0) from None
        except asyncio.CancelledError:
            if watcher is not None and watcher.done() and watcher.result():
                raise RunNotRunning(getattr(arg, "run_id", "?"), "stopped") from None
            raise
        finally:
            if watcher is not None:
                watcher.cancel()

    return limited


async def _watch(task: asyncio.Future[Any], stopped: Callable[[], bool]) -> bool:
    """Cancel ``task`` once ``stopped()``; True if it did."""
    while not task.done():
        await asyncio.sleep(WATCH_SECONDS)
        if stopped():  # a short, blocking status read (on its own thread when it needs the database)
            task.cancel()
            return True
    return False


@contextmanager
def alarm(seconds: float, stage_id: str) -> Iterator[None]:
    """Raise :class:`StageTimedOut` in this (main) thread after ``seconds``.

    A timer already set on the process (RQ's own job timeout uses ``SIGALRM``) is kept: if it is due first,
    its handler runs when it is due, and it is set again, less the time spent, on the way out."""
    deadline = time.monotonic() + seconds
    previous_handler = signal.getsignal(signal.SIGALRM)
    previous_delay, previous_interval = signal.getitimer(signal.ITIMER_REAL)
    previous_due = time.monotonic() + previous_delay if previous_delay else None

    def on_alarm(signum: int, frame: Any) -> None:
        if time.monotonic() >= deadline - 0.001 or previous_due is None:
            raise StageTimedOut(stage_id, seconds)
        # The earlier timer was due first: its handler runs (RQ's raises), and ours is armed again.
        signal.setitimer(signal.ITIMER_REAL, max(deadline - time.monotonic(), 0.001))
        if callable(previous_handler):
            previous_handler(signum, frame)

    signal.signal(signal.SIGALRM, on_alarm)
    first = min(seconds, previous_delay) if previous_delay else seconds
    signal.setitimer(signal.ITIMER_REAL, first)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_due is not None and previous_delay >= seconds:  # else it already fired, inside the stage
            signal.setitimer(signal.ITIMER_REAL, max(previous_due - time.monotonic(), 0.001), previous_interval)
