"""Driving runs in the calling process, with no worker: poll due suspended stages (and advance the runs they
resume), and drain until nothing is runnable. ``engine.run_until_idle()``, the in-memory test harness and the
maintenance tick all go through here. Imports no Django: the harness runs it on the in-memory adapters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

from ..kernel import FlushOutbox, Kernel, PollSuspended, TransitionRun
from ..kernel.commands import PollResult
from ..kernel.runner import DrainResult, JobOutcome, drain


def poll_suspended(kernel: Kernel, max_checks: int = 50) -> PollResult:
    """Check up to ``max_checks`` due suspended stages, and transition each run one of them resumed."""
    polled: PollResult = kernel.dispatch(PollSuspended(max_checks=max_checks))
    for run_id in polled.resumed_run_ids:
        kernel.dispatch(TransitionRun(run_id=run_id))
    return polled


def run_until_idle(
    kernel: Kernel,
    *,
    max_jobs: int | None = None,
    on_job: Callable[[JobOutcome], Any] | None = None,
    worker_id: str = "in-process",
    flush_max_events: int | None = 1000,
    max_polls: int = 100,
    release_on: Callable[[BaseException], bool] | None = None,
) -> DrainResult:
    """Claim pending runs, execute due jobs, poll due suspended stages and flush events (up to
    ``flush_max_events`` a round; ``None``: no flush) until nothing is runnable at the clock's current time.

    Stages not yet due, and retries in backoff, are left waiting. Returns the totals over every round.
    ``release_on`` is passed to :func:`~django_workflow_engine.kernel.runner.drain` (a busy database gives the
    job back at once).
    """
    total = DrainResult()
    while True:
        result = drain(
            kernel,
            worker_id=worker_id,
            max_jobs=None if max_jobs is None else max_jobs - total.jobs,
            on_job=on_job,
            release_on=release_on,
        )
        for counter in fields(DrainResult):
            setattr(total, counter.name, getattr(total, counter.name) + getattr(result, counter.name))
        polled = poll_suspended(kernel, max_polls)
        if flush_max_events is not None:
            kernel.dispatch(FlushOutbox(max_events=flush_max_events))
        if not polled.resumed_run_ids and not polled.failed and result.jobs == 0:
            return total
        if max_jobs is not None and total.jobs >= max_jobs:
            return total
