"""What the AI helper's calls return (:class:`TextResult`, :class:`ObjectResult`, :class:`EmbedResult`), the
token counts they carry (:class:`Usage`) and the errors they raise."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from ..core.errors import WorkflowEngineError, format_validation_errors

ZERO = Decimal(0)


class AIError(WorkflowEngineError):
    """An AI helper call could not produce what was asked for."""


class StructuredOutputError(AIError):
    """``generate_object`` got output that does not validate against the schema, even after one correction.

    ``errors`` holds pydantic's error dicts of the last attempt.
    """

    def __init__(self, model: str, schema: type[BaseModel], errors: Sequence[Mapping[str, Any]], attempts: int):
        self.errors = list(errors)
        super().__init__(
            f"Model {model!r} returned output that does not match {schema.__name__} after {attempts} attempt(s): "
            f"{format_validation_errors(self.errors)}."
        )


@dataclass(frozen=True)
class Usage:
    """Token counts of one call (or the sum over a tool loop's steps)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
        )


@dataclass(frozen=True)
class ToolCall:
    """One tool execution during ``generate_text``: the validated arguments and what the function returned."""

    id: str
    name: str
    arguments: Any
    result: Any


@dataclass(frozen=True)
class TextResult:
    """What ``generate_text`` returns.

    Attributes:
        text: the final answer text.
        usage: tokens summed over every step of a tool loop.
        cost: summed cost in USD, or ``None`` if any step could not be priced.
        model: the model key that was called.
        finish_reason: the provider's finish reason of the last step.
        tool_calls: tools executed, in order (empty without tools).
        steps: provider calls made (1 without tools).
        raw: the last litellm response.
    """

    text: str
    usage: Usage
    cost: Decimal | None
    model: str
    finish_reason: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    steps: int = 1
    raw: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class ObjectResult:
    """What ``generate_object`` returns: ``object`` is an instance of the schema."""

    object: Any
    usage: Usage
    cost: Decimal | None
    model: str
    attempts: int = 1
    raw: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class EmbedResult:
    """What ``embed`` returns: one vector per input text, in order."""

    embeddings: list[list[float]]
    usage: Usage
    cost: Decimal | None
    model: str
    raw: Any = field(default=None, repr=False, compare=False)

    @property
    def embedding(self) -> list[float]:
        """The first vector (handy for a single text)."""
        return self.embeddings[0]

    @property
    def dimensions(self) -> int:
        return len(self.embeddings[0]) if self.embeddings else 0


def sum_costs(costs: Sequence[Decimal | None]) -> Decimal | None:
    known = [c for c in costs if c is not None]
    if len(known) < len(costs):
        return None
    return sum(known, ZERO)


def usage_of(response: Any) -> Usage:
    usage = getattr(response, "usage", None)
    if usage is None:
        return Usage()
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) or 0 if details is not None else 0
    return Usage(
        input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cached_tokens=int(cached),
    )


def row_usage(row: Any) -> Usage:
    """The tokens an ``AICall`` row recorded."""
    return Usage(row.input_tokens, row.output_tokens, row.cached_tokens)
