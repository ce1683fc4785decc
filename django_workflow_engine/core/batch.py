"""Async-batch stages: stages that submit work elsewhere, suspend, and are polled until it is done."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from .errors import WorkflowDefinitionError
from .retry import RetryPolicy, Seconds
from .stage import Stage, make_stage

DEFAULT_POLL_INTERVAL = timedelta(seconds=30)
DEFAULT_MAX_WAIT = timedelta(hours=24)
_SIGNAL_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


def check_signal_name(name: Any, where: str) -> str:
    """``name`` if it is a valid signal name, else :class:`WorkflowDefinitionError` naming ``where``."""
    if not isinstance(name, str) or not _SIGNAL_NAME.match(name):
        raise WorkflowDefinitionError(
            f"{where}: signal name must be 1-100 characters of letters, digits, '_', '.', ':' or '-', got {name!r}."
        )
    return name


def as_timedelta(value: float | timedelta | None, default: timedelta) -> timedelta:
    if value is None:
        return default
    if isinstance(value, timedelta):
        return value
    return timedelta(seconds=float(value))


@dataclass(frozen=True)
class Suspend:
    """Returned by an async-batch stage's ``execute`` to park the stage until ``check_completion`` says ready.

    Attributes:
        state: JSON state (e.g. ``{"batch_id": ...}``) handed back to ``check_completion`` and, if the stage is
            re-executed, to ``ctx.resume_state``.
        poll_interval: time between polls, seconds or ``timedelta`` (default 30 s).
        max_wait: give up and fail the run after this long (default 24 h).
        next_poll_at: first poll time; default ``now + poll_interval``.
        custom_metrics: numbers stored in the stage's metrics right away.
        wait_for_signal: a signal name: ``engine.signal(run_id, name, payload)`` then puts the payload in the
            state (``state["signal"]``) and rings the doorbell: a worker calls ``check_completion`` at once,
            instead of after ``poll_interval``. One signal per wait: a second one is refused. Declare the name
            in ``define_async_batch_stage(signals=[...])`` to keep a signal that comes before the stage waits.
    """

    state: Mapping[str, Any] = field(default_factory=dict)
    poll_interval: float | timedelta | None = None
    max_wait: float | timedelta | None = None
    next_poll_at: datetime | None = None
    custom_metrics: Mapping[str, float] = field(default_factory=dict)
    wait_for_signal: str | None = None

    @property
    def poll_interval_delta(self) -> timedelta:
        return as_timedelta(self.poll_interval, DEFAULT_POLL_INTERVAL)

    @property
    def max_wait_delta(self) -> timedelta:
        return as_timedelta(self.max_wait, DEFAULT_MAX_WAIT)


@dataclass(frozen=True)
class Ready:
    """``check_completion`` result: the work is done; ``output`` becomes the stage output."""

    output: Any = None
    custom_metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class NotReady:
    """``check_completion`` result: poll again after ``next_check_in`` (default: the stage's poll interval)."""

    next_check_in: float | timedelta | None = None


@dataclass(frozen=True)
class CompletionError:
    """``check_completion`` result: the work failed for good; the stage and its run fail with ``error``."""

    error: str


CompletionResult = Ready | NotReady | CompletionError


def define_async_batch_stage(
    *,
    id: str,
    name: str,
    check_completion: Callable[..., CompletionResult],
    description: str = "",
    input: type[BaseModel] | None = None,
    output: type[BaseModel] | None = None,
    config: type[BaseModel] | None = None,
    dependencies: Sequence[str] = (),
    execute: Callable[..., Any] | None = None,
    max_attempts: int | None = None,
    retry_base_seconds: float | None = None,
    retry: RetryPolicy | None = None,
    timeout: Seconds | None = None,
    max_concurrent: int | None = None,
    signals: Sequence[str] = (),
) -> Stage | Callable[[Callable[..., Any]], Stage]:
    """Define an async-batch stage.

    ``execute(ctx)`` returns :class:`Suspend` to park the stage (or an output to finish at once). The
    maintenance loop then calls ``check_completion(state, ctx)`` until it returns :class:`Ready` (the stage
    completes with its output), :class:`CompletionError` (stage and run fail), or the stage has waited longer
    than ``max_wait``. ``check_completion`` may be called more than once for one completion, so make it
    idempotent. When a suspended stage is executed again, ``ctx.resume_state`` holds the saved state.

    Usable as a decorator or with ``execute=``, like :func:`define_stage`; ``timeout`` limits each call of
    ``execute`` (the wait while suspended is bounded by ``Suspend(max_wait=...)``).

    ``signals`` names the signals the stage may wait for with ``Suspend(wait_for_signal=...)``: a signal of one
    of these names sent before the stage waits is kept, and handed to it (``state["signal"]``) as soon as it
    suspends waiting for it. An undeclared name still wakes the stage once it waits; sent earlier, it is refused.
    """
    if not callable(check_completion):
        raise WorkflowDefinitionError(f"Stage {id!r}: check_completion must be callable, got {check_completion!r}.")
    if isinstance(signals, str):
        signals = (signals,)
    declared = tuple(dict.fromkeys(check_signal_name(n, f"Stage {id!r}") for n in signals))

    def build(fn: Callable[..., Any]) -> Stage:
        return make_stage(
            id=id,
            name=name,
            description=description,
            input=input,
            output=output,
            config=config,
            dependencies=dependencies,
            execute=fn,
            mode="async-batch",
            check_completion=check_completion,
            max_attempts=max_attempts,
            retry_base_seconds=retry_base_seconds,
            retry=retry,
            timeout=timeout,
            max_concurrent=max_concurrent,
            signals=declared,
        )

    if execute is not None:
        return build(execute)
    return build


def wait_for_children(state: Any, ctx: Any) -> Ready | NotReady:
    """A ready-made ``check_completion`` for a stage that started child runs (``ctx.start_child``) and waits for
    them: not ready while one runs; then ready with ``{"children": [{"key", "run_id", "workflow_id", "status",
    "output", "error"}, ...]}`` in start order, failures and cancellations included for the next stage to
    judge. The parent stage is woken as soon as its last child finishes."""
    children = ctx.children()
    if not all(child.finished for child in children):
        return NotReady()
    return Ready(
        output={
            "children": [
                {
                    "key": c.key,
                    "run_id": c.run_id,
                    "workflow_id": c.workflow_id,
                    "status": c.status,
                    "output": c.output if c.status == "COMPLETED" else None,
                    "error": c.error,
                }
                for c in children
            ]
        }
    )
