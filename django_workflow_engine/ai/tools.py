"""Tools for ``generate_text``: a Python function taking one pydantic-model argument, described to the model."""

from __future__ import annotations

import inspect
import json
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ..core.errors import format_validation_errors
from .costs import ModelSpec
from .ledger import CallLedger
from .prompts import error_text
from .recording import elapsed_ms, run_sync
from .results import ToolCall


@dataclass(frozen=True)
class Tool:
    name: str
    fn: Callable[..., Any]
    args_model: type[BaseModel]
    spec: dict[str, Any]


def tool_from(fn: Callable[..., Any]) -> Tool:
    params = list(inspect.signature(fn).parameters.values())
    hints = typing.get_type_hints(fn)
    model = hints.get(params[0].name) if len(params) == 1 else None
    if not (inspect.isclass(model) and issubclass(model, BaseModel)):
        raise TypeError(
            f"Tool {getattr(fn, '__name__', fn)!r} must take exactly one argument annotated with a pydantic model, "
            "e.g. def lookup(args: LookupArgs) -> dict."
        )
    name = fn.__name__
    spec = {
        "type": "function",
        "function": {
            "name": name,
            "description": inspect.getdoc(fn) or name,
            "parameters": model.model_json_schema(),
        },
    }
    return Tool(name=name, fn=fn, args_model=model, spec=spec)


def jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def run_tool(ledger: CallLedger, spec: ModelSpec, tool: Tool, call: Any) -> ToolCall:
    """Execute one tool call the model asked for; its row (zero cost, topic ``<topic>.tool.<name>``) is
    written once per logical call."""
    started = time.monotonic()
    raw_args = call.function.arguments or "{}"
    topic = f"{ledger.topic}.tool.{tool.name}"
    # The tool itself runs again on a re-execution (it is stage code); its row is written once.
    key = ledger._key("tool", spec, {"tool": tool.name, "arguments": raw_args}, topic=topic)
    journal = ledger._journal
    done = key is not None and journal is not None and run_sync(lambda: journal.recorded(key)) is not None

    def record(shown: str, call_key: str | None, error: str | None = None) -> None:
        entry = ledger._entry(
            spec,
            "tool",
            topic=topic,
            prompt=raw_args,
            response=shown,
            latency_ms=elapsed_ms(started),
            error=error,
            metadata={"tool_name": tool.name, "tool_call_id": call.id},
            call_key=call_key,
        )
        ledger._record(entry)

    try:
        args = tool.args_model.model_validate_json(raw_args)
    except ValidationError as exc:
        # The model sent bad arguments: tell it (as the tool's result) so it can correct itself.
        result: Any = {"error": f"invalid arguments: {format_validation_errors(exc.errors())}"}
        if not done:
            record(json.dumps(result), key)
        return ToolCall(id=call.id, name=tool.name, arguments=None, result=result)
    try:
        result = tool.fn(args)
    except Exception as exc:
        record("", None, error=error_text(exc))  # not memoized
        raise
    if not done:  # else recorded by an earlier execution of this stage
        record(json.dumps(jsonable(result), default=str), key)
    return ToolCall(id=call.id, name=tool.name, arguments=args, result=result)
