"""Stages that wait for a named signal from a person or an outside system: :func:`define_signal_stage`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel

from .batch import CompletionError, NotReady, Ready, Suspend
from .errors import WorkflowDefinitionError
from .retry import Seconds, check_timeout
from .stage import STAGE_ID_RE, Stage, make_stage, run_callable

# How long a signal stage waits when it has no timeout, and how soon after suspending it first looks again (a
# signal delivered while the stage was still starting is kept, and consumed by that look).
NO_TIMEOUT = timedelta(days=3650)
FIRST_LOOK = timedelta(seconds=1)


def define_signal_stage(
    *,
    id: str,
    name: str,
    signal: str,
    output: type[BaseModel],
    input: type[BaseModel] | None = None,
    description: str = "",
    timeout: Seconds | None = None,
    on_timeout: Literal["fail"] | BaseModel | Mapping[str, Any] = "fail",
    prepare: Callable[..., Any] | None = None,
) -> Stage:
    """A stage that waits for the signal ``signal`` and completes with its payload, validated by ``output``.

    ``prepare(ctx)``, if given, runs first (notify someone, compute what a reviewer must see); a JSON value it
    returns is kept with the waiting stage (the admin shows it above the form). The stage then waits, SUSPENDED
    and costing nothing, until ``engine.signal(run_id, signal, payload)`` delivers the answer: the stage
    completes and the run moves on in that same transaction. A signal delivered before the stage waits is kept
    and consumed when it gets there.

    Args:
        timeout: seconds (or a ``timedelta``) to wait; then ``on_timeout`` applies. ``None``: no limit.
        on_timeout: ``"fail"`` (the stage and run fail with "no signal ... within N s"), or a default output.

    Raises:
        WorkflowDefinitionError: a bad signal name, output model, timeout or default.
    """
    if not isinstance(signal, str) or not STAGE_ID_RE.match(signal):
        raise WorkflowDefinitionError(
            f"Stage {id!r}: signal must be a name of 1-100 letters, digits, '-', '_' or '.', got {signal!r}."
        )
    if not (isinstance(output, type) and issubclass(output, BaseModel)):
        raise WorkflowDefinitionError(f"Stage {id!r}: output= must be a pydantic BaseModel subclass (the payload).")
    seconds = check_timeout(f"Stage {id!r}", "timeout", timeout)
    default: dict[str, Any] | None = None
    if on_timeout != "fail":
        try:
            default = output.model_validate(
                on_timeout.model_dump() if isinstance(on_timeout, BaseModel) else on_timeout
            ).model_dump(mode="json")
        except Exception as exc:
            raise WorkflowDefinitionError(f"Stage {id!r}: on_timeout is not a valid {output.__name__}: {exc}") from None
    wait = timedelta(seconds=seconds) if seconds is not None else NO_TIMEOUT

    def execute(ctx: Any) -> Any:
        taken, payload = ctx.signals.take(signal)
        if taken:
            return payload
        prepared = run_callable(prepare, ctx) if prepare is not None else None
        if isinstance(prepared, BaseModel):
            prepared = prepared.model_dump(mode="json")
        now = ctx.now()
        return Suspend(
            state={"signal": signal, "prepared": prepared, "until": (now + wait).isoformat()},
            poll_interval=wait,
            max_wait=wait + timedelta(days=1),
            next_poll_at=now + FIRST_LOOK,
        )

    def check(state: Mapping[str, Any], ctx: Any) -> Any:
        taken, payload = ctx.signals.take(signal)
        if taken:
            return Ready(payload)
        until = datetime.fromisoformat(state["until"])
        left = until - ctx.now()
        if left > timedelta(0):
            return NotReady(next_check_in=left)
        if default is not None:
            return Ready(default)
        return CompletionError(f"No signal {signal!r} arrived within {wait.total_seconds():g} s.")

    stage = make_stage(
        id=id,
        name=name,
        description=description,
        input=input,
        output=output,
        execute=execute,
        mode="async-batch",
        check_completion=check,
        max_attempts=1,
        signal=signal,
    )
    return stage
