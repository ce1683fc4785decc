"""The stages this process is executing now, so that a running stage's latest ``ctx.progress(...)`` can be
written while it runs: by the worker's lease-keeper beat (one statement per beat and stage, only when the
progress changed), never by ``progress()`` itself. In memory only; no statement here."""

from __future__ import annotations

import threading
from typing import Any

_LOCK = threading.Lock()
_RUNNING: dict[tuple[str, str], Any] = {}


def started(run_id: str, stage_id: str, ctx: Any) -> None:
    with _LOCK:
        _RUNNING[(run_id, stage_id)] = ctx


def finished(run_id: str, stage_id: str) -> None:
    with _LOCK:
        _RUNNING.pop((run_id, stage_id), None)


def latest_progress(run_id: str, stage_id: str) -> tuple[int, dict[str, Any]] | None:
    """``(n, event)``: how many progress reports the running stage made and the last one; ``None`` if it is not
    running here or reported none."""
    with _LOCK:
        ctx = _RUNNING.get((run_id, stage_id))
    events = getattr(ctx, "progress_events", None)
    if not events:
        return None
    n = len(events)
    return n, dict(events[n - 1])
