"""Signal stages: stages that wait for a named signal (a person's answer, a webhook) and complete with its payload."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from .batch import CompletionError, Ready, Suspend, as_timedelta, check_signal_name
from .context import StageContext
from .errors import WorkflowDefinitionError
from .stage import Stage, make_stage, run_callable

# A signal stage without a timeout is never polled: it costs nothing while it waits.
NO_TIMEOUT = timedelta(days=36500)
SIGNAL_STATE_KEY = "waiting_for_signal"
PREPARED_STATE_KEY = "prepared"

__all__ = ["NO_TIMEOUT", "PREPARED_STATE_KEY", "SIGNAL_STATE_KEY", "check_signal_name", "define_signal_stage"]


def define_signal_stage(
    *,
    id: str,
    name: str,
    signal: str,
    output: type[BaseModel],
    input: type[BaseModel] | None = None,
    description: str = "",
    config: type[BaseModel] | None = None,
    dependencies: Sequence[str] = (),
    timeout: float | timedelta | None = None,
    on_timeout: Any = "fail",
    prepare: Callable[[StageContext], Any] | None = None,
) -> Stage:
    """Define a stage that waits for the signal ``signal`` and completes with its payload.

    The stage first runs ``prepare(ctx)`` if given (to notify someone, or to compute what the reviewer must see:
    a JSON dict it returns is stored with the stage and shown above the admin form; ``Ready(output=...)`` instead
    completes the stage with that output at once, when there is nothing to ask), then waits: status
    SUSPENDED, nothing polled, until :meth:`engine.signal(run_id, signal, payload) <Engine.signal>` delivers a
    payload valid for ``output``; the stage completes with it and the run goes on at once.

    Args:
        timeout: seconds or ``timedelta``; without it the stage waits forever.
        on_timeout: ``"fail"`` (the stage and run fail) or a default output (an ``output`` instance or dict)
            the stage completes with when the timeout passes without a signal.
    """
    check_signal_name(signal, f"Stage {id!r}")
    if not (isinstance(output, type) and issubclass(output, BaseModel)):
        raise WorkflowDefinitionError(f"Stage {id!r}: output= must be a pydantic model class, got {output!r}.")
    if prepare is not None and not callable(prepare):
        raise WorkflowDefinitionError(f"Stage {id!r}: prepare must be callable, got {prepare!r}.")
    wait = as_timedelta(timeout, NO_TIMEOUT)
    if wait <= timedelta(0):
        raise WorkflowDefinitionError(f"Stage {id!r}: timeout must be positive, got {timeout!r}.")
    if isinstance(on_timeout, str) and on_timeout != "fail":
        raise WorkflowDefinitionError(
            f"Stage {id!r}: on_timeout must be 'fail' or a default output, got {on_timeout!r}."
        )
    default: Any = None
    if on_timeout != "fail":
        try:
            default = output.model_validate(on_timeout).model_dump(mode="json")
        except Exception as exc:
            raise WorkflowDefinitionError(f"Stage {id!r}: on_timeout is not a valid {output.__name__}: {exc}") from None

    def execute(ctx: StageContext) -> Suspend | BaseModel:
        prepared = run_callable(prepare, ctx) if prepare is not None else None
        if isinstance(prepared, Ready):  # nothing to ask: complete with this output, without waiting
            answer = prepared.output
            return output.model_validate(answer.model_dump() if isinstance(answer, BaseModel) else answer)
        if isinstance(prepared, BaseModel):
            prepared = prepared.model_dump(mode="json")
        state = {SIGNAL_STATE_KEY: signal, PREPARED_STATE_KEY: prepared}
        # First (and only) poll at the deadline: a poll means the timeout passed.
        return Suspend(state=state, poll_interval=wait, max_wait=wait + timedelta(days=1))

    def check_completion(state: Any, ctx: Any) -> Any:
        if default is None:
            return CompletionError(f"Stage {id!r} timed out waiting for signal {signal!r} (timeout {wait}).")
        return Ready(output=output.model_validate(default))

    return make_stage(
        id=id,
        name=name,
        description=description,
        input=input,
        output=output,
        config=config,
        dependencies=dependencies,
        execute=execute,
        mode="async-batch",
        check_completion=check_completion,
        max_attempts=1,
        signal=signal,
    )
