"""The AI helper: litellm calls with one ``AICall`` row per provider call, live run totals and budgets.

Every provider call is timed, priced and written as an :class:`~django_workflow_engine.models.AICall` row in a
short transaction that also adds its cost and tokens to the run's ``total_cost``/``total_tokens`` with
``F()`` expressions, so concurrent stages of one run never lose each other's spend.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import inspect
import json
import re
import time
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ValidationError

from ..core.context import StageContext
from ..core.errors import BudgetExceeded, WorkflowEngineError, format_validation_errors
from .costs import ModelSpec, default_budget, load_litellm, resolve_model, response_cost
from .journal import AlreadyRecorded, CallJournal, completion_from, completion_payload, logger, scope_for

Prompt = str | Sequence[Mapping[str, Any]]
ZERO = Decimal(0)
DEFAULT_MAX_STEPS = 10


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


def _sum_costs(costs: Sequence[Decimal | None]) -> Decimal | None:
    if any(c is None for c in costs):
        return None
    return sum(costs, ZERO)  # type: ignore[arg-type]


def _usage_of(response: Any) -> Usage:
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


def _messages(prompt: Prompt, system: str | None) -> list[dict[str, Any]]:
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return messages


def _prompt_text(prompt: Prompt, system: str | None) -> str:
    if isinstance(prompt, str) and not system:
        return prompt
    return json.dumps(_messages(prompt, system), default=str, ensure_ascii=False)


def _error_text(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {exc}"


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def _strip_fences(text: str) -> str:
    match = _FENCE.match(text or "")
    return match.group(1) if match else (text or "")


def _row_tokens(row: Any) -> tuple[int, int, int]:
    return row.input_tokens, row.output_tokens, row.cached_tokens


def _run_db(fn: Callable[[], Any]) -> Any:
    """Run ORM work or a provider call; inside a running event loop (an ``async def`` stage) it runs on a
    helper thread, since Django refuses synchronous queries there and litellm, seeing a running loop, would
    leave its async logging tasks on a loop that is about to close."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    from django.db import close_old_connections

    def in_thread() -> Any:
        try:
            return fn()
        finally:
            close_old_connections()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(in_thread).result()


# -- tools ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tool:
    name: str
    fn: Callable[..., Any]
    args_model: type[BaseModel]
    spec: dict[str, Any]


def _tool(fn: Callable[..., Any]) -> _Tool:
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
    return _Tool(name=name, fn=fn, args_model=model, spec=spec)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


# -- the helper -------------------------------------------------------------------------------------------


class AIHelper:
    """litellm-backed AI calls with cost tracking, for one topic (and optionally one run and stage).

    Create one with ``ctx.ai()`` inside a stage, or :func:`create_ai_helper` anywhere else. Every method takes
    a model key (a litellm model name such as ``"gpt-4o-mini"``, or a key of ``WORKFLOW_ENGINE["AI_MODELS"]``)
    and passes any other keyword arguments to litellm unchanged (``temperature``, ``max_tokens``,
    ``api_base``, ``num_retries``, ``mock_response``...).
    """

    def __init__(
        self,
        topic: str,
        *,
        run_id: str | None = None,
        stage_pk: str | None = None,
        usage_sink: Any = None,
        journal: CallJournal | None = None,
        workflow_id: str | None = None,
        stage_key: str | None = None,
    ):
        self.topic = topic
        self.run_id = run_id
        self.stage_pk = stage_pk
        # The run's workflow id and the stage's definition id, stored on every call (read from the run and
        # stage rows when recording if not known here).
        self.workflow_id = workflow_id
        self.stage_key = stage_key
        self._usage_sink = usage_sink
        self._journal = journal  # set inside a stage's execute: its calls are memoized (see journal.py)

    def child(self, segment: str, id: str | None = None) -> AIHelper:
        """A helper for ``<topic>.<segment>[.<id>]`` sharing this one's run and stage."""
        topic = f"{self.topic}.{segment}" + (f".{id}" if id else "")
        return AIHelper(
            topic,
            run_id=self.run_id,
            stage_pk=self.stage_pk,
            usage_sink=self._usage_sink,
            journal=self._journal,
            workflow_id=self.workflow_id,
            stage_key=self.stage_key,
        )

    # -- public methods -----------------------------------------------------------------------------------

    def generate_text(
        self,
        model: str,
        prompt: Prompt,
        *,
        system: str | None = None,
        tools: Sequence[Callable[..., Any] | Mapping[str, Any]] | None = None,
        max_steps: int = DEFAULT_MAX_STEPS,
        **options: Any,
    ) -> TextResult:
        """Generate text from a prompt string or a list of chat messages.

        Args:
            model: model key.
            prompt: a user prompt, or OpenAI-style messages.
            system: an optional system message put first.
            tools: Python functions taking one pydantic-model argument (executed here, in a loop, until the
                model answers without calling a tool; each execution is an ``AICall`` row under
                ``<topic>.tool.<name>`` with zero cost), or raw tool dicts passed through unexecuted.
            max_steps: most provider calls a tool loop may make.
            **options: passed to ``litellm.completion`` unchanged.

        Raises:
            BudgetExceeded: the run's budget is spent (before the call) or this call passed it (after).
            AIError: the tool loop did not finish within ``max_steps``.
            Exception: litellm's errors (``RateLimitError``...), re-raised after being recorded.
        """
        spec = resolve_model(model)
        messages = _messages(prompt, system)
        callables = {t.name: t for t in (_tool(f) for f in tools or () if callable(f))}
        if tools:
            options["tools"] = [t.spec for t in callables.values()] + [t for t in tools if not callable(t)]
            # litellm imports its MCP gateway (an optional dependency) whenever tools are passed, unless told
            # this is not an MCP call; plain function tools never are.
            options.setdefault("_skip_mcp_handler", True)
        usages: list[Usage] = []
        costs: list[Decimal | None] = []
        executed: list[ToolCall] = []
        prompt_text = _prompt_text(prompt, system)
        for step in range(1, max_steps + 1):
            response, usage, cost = self._complete(spec, messages, options, "text", prompt_text, {"step": step})
            usages.append(usage)
            costs.append(cost)
            message = response.choices[0].message
            calls = [c for c in (getattr(message, "tool_calls", None) or []) if c.function.name in callables]
            if not calls:
                return TextResult(
                    text=message.content or "",
                    usage=sum(usages, Usage()),
                    cost=_sum_costs(costs),
                    model=model,
                    finish_reason=response.choices[0].finish_reason,
                    tool_calls=tuple(executed),
                    steps=step,
                    raw=response,
                )
            messages.append(message.model_dump(exclude_none=True))
            for call in calls:
                executed.append(self._run_tool(spec, callables[call.function.name], call))
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": call.id,
                        "content": json.dumps(_jsonable(executed[-1].result), default=str),
                    }
                )
        raise AIError(f"Model {model!r} was still calling tools after {max_steps} steps; raise max_steps or simplify.")

    def generate_object(
        self, model: str, prompt: Prompt, *, schema: type[BaseModel], system: str | None = None, **options: Any
    ) -> ObjectResult:
        """Generate a validated instance of ``schema``.

        Models with native structured output (per litellm, or ``AI_MODELS[key]["supports_response_schema"]``)
        get ``response_format=schema``; others get JSON mode plus the JSON Schema in a system message. Output
        that does not validate gets one corrective retry that shows the model its errors.

        Raises:
            StructuredOutputError: still invalid after the retry; the message names the failing fields.
            BudgetExceeded, and litellm's errors, as for :meth:`generate_text`.
        """
        spec = resolve_model(model)
        if self._native_structured_output(spec):
            options.setdefault("response_format", schema)
            messages = _messages(prompt, system)
        else:
            options.setdefault("response_format", {"type": "json_object"})
            instructions = "Reply with only a JSON object that validates against this JSON Schema:\n" + json.dumps(
                schema.model_json_schema()
            )
            messages = _messages(prompt, f"{system}\n\n{instructions}" if system else instructions)
        prompt_text = _prompt_text(prompt, system)
        usages: list[Usage] = []
        costs: list[Decimal | None] = []
        errors: list[Any] = []

        def validate(text: str) -> str | None:
            try:
                schema.model_validate_json(_strip_fences(text))
            except ValidationError as exc:
                return f"invalid structured output: {format_validation_errors(exc.errors())}"
            return None

        for attempt in (1, 2):
            response, usage, cost = self._complete(
                spec, messages, options, "object", prompt_text, {"attempt": attempt}, validate=validate
            )
            usages.append(usage)
            costs.append(cost)
            try:
                parsed = schema.model_validate_json(_strip_fences(response.choices[0].message.content or ""))
            except ValidationError as exc:
                errors[:] = exc.errors()
            else:
                return ObjectResult(
                    object=parsed,
                    usage=sum(usages, Usage()),
                    cost=_sum_costs(costs),
                    model=model,
                    attempts=attempt,
                    raw=response,
                )
            messages = [
                *messages,
                {"role": "assistant", "content": response.choices[0].message.content or ""},
                {
                    "role": "user",
                    "content": f"That reply does not match the schema ({format_validation_errors(errors)}). "
                    "Reply again with only the corrected JSON object.",
                },
            ]
        raise StructuredOutputError(model, schema, errors, attempts=2)

    def embed(
        self, model: str, texts: str | Sequence[str], dimensions: int | None = None, **options: Any
    ) -> EmbedResult:
        """Embed one text or many (one provider call for all of them).

        Args:
            dimensions: output size, for models that support it (``text-embedding-3-*``...).
            **options: passed to ``litellm.embedding`` unchanged.
        """
        spec = resolve_model(model)
        items = [texts] if isinstance(texts, str) else list(texts)
        if dimensions is not None:
            options["dimensions"] = dimensions
        prompt_text = items[0] if len(items) == 1 else json.dumps(items, ensure_ascii=False)
        row, key = self._lookup(self._key("embed", spec, {"input": items, "options": options}))
        if row is not None:
            usage, cost = self._replayed(row)
            return EmbedResult(embeddings=row.replay["embeddings"], usage=usage, cost=cost, model=model)
        self._check_budget()
        litellm = load_litellm()
        started = time.monotonic()
        try:
            response = _run_db(
                lambda: litellm.embedding(model=spec.model_id, input=items, **{**spec.params, **options})
            )
        except Exception as exc:
            self._record_failure(spec, "embed", prompt_text, exc, started, {"text_count": len(items)})
            raise
        vectors = [list(d["embedding"] if isinstance(d, Mapping) else d.embedding) for d in response.data]
        usage = _usage_of(response)
        cost = response_cost(spec, response, usage)
        self._record(
            spec,
            "embed",
            prompt_text,
            f"[{len(vectors)} embeddings, {len(vectors[0]) if vectors else 0} dims]",
            usage,
            cost,
            started,
            metadata={"text_count": len(items), "dimensions": len(vectors[0]) if vectors else 0},
            call_key=key,
            replay={"embeddings": vectors} if key else None,
        )
        return EmbedResult(embeddings=vectors, usage=usage, cost=cost, model=model, raw=response)

    def stream_text(self, model: str, prompt: Prompt, *, system: str | None = None, **options: Any) -> TextStream:
        """Stream text: iterate the returned :class:`TextStream` for chunks.

        The request is sent when iteration starts. Usage and cost are recorded exactly once, when the stream
        ends (or is closed early, with ``metadata.completed = false``); then ``stream.text``, ``stream.usage``
        and ``stream.cost`` are set. ``stream_options={"include_usage": True}`` is sent unless given.
        """
        spec = resolve_model(model)
        messages = _messages(prompt, system)
        # The key is taken now, in call order, even though the request is sent when iteration starts.
        key = self._key("stream", spec, {"messages": messages, "options": options})
        return TextStream(self, spec, messages, options, _prompt_text(prompt, system), call_key=key)

    def submit_batch(self, model: str, requests: Sequence[Mapping[str, Any]], **options: Any) -> Any:
        """Submit a provider batch; see :func:`django_workflow_engine.ai.batch.submit_batch`."""
        from .batch import submit_batch

        return submit_batch(self, model, requests, **options)

    def get_batch_results(self, handle: Any, **options: Any) -> Any:
        """Poll a provider batch; see :func:`django_workflow_engine.ai.batch.get_batch_results`."""
        from .batch import get_batch_results

        return get_batch_results(self, handle, **options)

    def spent(self) -> Decimal:
        """The run's ``total_cost`` now (zero without a run)."""
        if not self.run_id:
            return ZERO
        from ..models import WorkflowRun

        value = _run_db(lambda: WorkflowRun.objects.filter(pk=self.run_id).values_list("total_cost", flat=True).first())
        return value or ZERO

    # -- internals ----------------------------------------------------------------------------------------

    def _native_structured_output(self, spec: ModelSpec) -> bool:
        if spec.structured_output is not None:
            return bool(spec.structured_output)
        try:
            return bool(load_litellm().supports_response_schema(model=spec.model_id))
        except Exception:
            return False

    def _complete(
        self,
        spec: ModelSpec,
        messages: list[dict[str, Any]],
        options: Mapping[str, Any],
        call_type: str,
        prompt_text: str,
        metadata: dict[str, Any],
        validate: Callable[[str], str | None] | None = None,
    ) -> tuple[Any, Usage, Decimal | None]:
        row, key = self._lookup(self._key(call_type, spec, {"messages": messages, "options": options}))
        if row is not None:
            usage, cost = self._replayed(row)
            return completion_from(row.replay), usage, cost
        self._check_budget()
        litellm = load_litellm()
        started = time.monotonic()
        try:
            response = _run_db(
                lambda: litellm.completion(model=spec.model_id, messages=messages, **{**spec.params, **options})
            )
        except Exception as exc:
            self._record_failure(spec, call_type, prompt_text, exc, started, metadata)
            raise
        usage = _usage_of(response)
        cost = response_cost(spec, response, usage)
        choice = response.choices[0]
        text = choice.message.content or ""
        error = validate(text) if validate is not None else None
        calls = getattr(choice.message, "tool_calls", None) or []
        shown = text or json.dumps([{"tool": c.function.name, "arguments": c.function.arguments} for c in calls])
        winner = self._record(
            spec,
            call_type,
            prompt_text,
            shown,
            usage,
            cost,
            started,
            error=error,
            metadata={**metadata, "finish_reason": choice.finish_reason, "response_model": response.model},
            call_key=key,
            replay=completion_payload(response) if key else None,
        )
        if winner is not None and winner.replay is not None:
            # Another execution of this stage recorded this call first: continue with its answer, so the
            # stage's result agrees with the ledger.
            return completion_from(winner.replay), Usage(*_row_tokens(winner)), winner.cost
        return response, usage, cost

    def _run_tool(self, spec: ModelSpec, tool: _Tool, call: Any) -> ToolCall:
        started = time.monotonic()
        raw_args = call.function.arguments or "{}"
        meta = {"tool_name": tool.name, "tool_call_id": call.id}
        topic = f"{self.topic}.tool.{tool.name}"
        # The tool itself runs again on a re-execution (it is stage code); its row is written once.
        key = self._key("tool", spec, {"tool": tool.name, "arguments": raw_args}, topic=topic)
        journal = self._journal
        done = key is not None and journal is not None and _run_db(lambda: journal.recorded(key)) is not None
        try:
            args = tool.args_model.model_validate_json(raw_args)
        except ValidationError as exc:
            # The model sent bad arguments: tell it (as the tool's result) so it can correct itself.
            result: Any = {"error": f"invalid arguments: {format_validation_errors(exc.errors())}"}
            if not done:
                self._record_tool(spec, raw_args, json.dumps(result), started, meta, topic, key)
            return ToolCall(id=call.id, name=tool.name, arguments=None, result=result)
        try:
            result = tool.fn(args)
        except Exception as exc:
            self._record_tool(spec, raw_args, "", started, meta, topic, None, error=_error_text(exc))  # not memoized
            raise
        shown = json.dumps(_jsonable(result), default=str)
        if not done:  # else recorded by an earlier execution of this stage
            self._record_tool(spec, raw_args, shown, started, meta, topic, key)
        return ToolCall(id=call.id, name=tool.name, arguments=args, result=result)

    def _record_tool(
        self,
        spec: ModelSpec,
        arguments: str,
        shown: str,
        started: float,
        meta: dict[str, Any],
        topic: str,
        key: str | None,
        error: str | None = None,
    ) -> None:
        self._record(
            spec,
            "tool",
            arguments,
            shown,
            Usage(),
            ZERO,
            started,
            error=error,
            metadata=meta,
            topic=topic,
            call_key=key,
        )

    # -- the journal ----------------------------------------------------------------------------------------

    def _key(self, call_type: str, spec: ModelSpec, request: dict[str, Any], topic: str | None = None) -> str | None:
        """The logical key of the next call, inside a stage's execute; ``None`` elsewhere (not memoized)."""
        if self._journal is None:
            return None
        return self._journal.next_key(call_type, spec.key, spec.model_id, topic or self.topic, request)

    def _lookup(self, key: str | None) -> tuple[Any, str | None]:
        """``(recorded row, key)``: the row to replay, or ``(None, key)`` to call the provider and record under
        ``key``. A row whose replay data was already dropped cannot be replayed: the call is made again and
        recorded without a key."""
        if key is None or self._journal is None:
            return None, key
        journal = self._journal
        row = _run_db(lambda: journal.recorded(key))
        if row is None:
            return None, key
        if row.replay is None:
            return None, None
        return row, key

    def _replayed(self, row: Any) -> tuple[Usage, Decimal | None]:
        """A recorded call given back: nothing is sent or written. A call that passed the budget when it was made
        passes it again now."""
        usage = Usage(*_row_tokens(row))
        if row.cost or usage.total_tokens:
            self._check_budget(after=True)
        return usage, row.cost

    def _budget(self) -> tuple[Decimal | None, Decimal]:
        from ..models import WorkflowRun

        row = WorkflowRun.objects.filter(pk=self.run_id).values("max_cost", "total_cost", "workflow_id").first()
        if row is None:
            return None, ZERO
        budget = row["max_cost"] if row["max_cost"] is not None else default_budget(row["workflow_id"])
        return budget, row["total_cost"] or ZERO

    def _check_budget(self, *, after: bool = False) -> None:
        """Before a call: refuse if the run has spent its budget. After one: raise if this call passed it."""
        if not self.run_id:
            return
        budget, spent = _run_db(self._budget)
        if budget is None:
            return
        if spent > budget or (not after and spent >= budget):
            raise BudgetExceeded(self.run_id, _fmt(budget), _fmt(spent))

    def _record_failure(
        self, spec: ModelSpec, call_type: str, prompt_text: str, exc: BaseException, started: float, metadata: dict
    ) -> None:
        self._record(
            spec, call_type, prompt_text, None, Usage(), ZERO, started, error=_error_text(exc), metadata=metadata
        )

    def _record(
        self,
        spec: ModelSpec,
        call_type: str,
        prompt: str | None,
        response: str | None,
        usage: Usage,
        cost: Decimal | None,
        started: float,
        *,
        error: str | None = None,
        metadata: dict[str, Any] | None = None,
        topic: str | None = None,
        is_batch: bool = False,
        check_budget: bool = True,
        call_key: str | None = None,
        replay: Any = None,
    ) -> Any:
        """Write the row; returns ``None``, or the row another execution of the stage recorded first under
        ``call_key`` (then nothing is written: the journal keeps one row per logical call)."""
        latency_ms = int((time.monotonic() - started) * 1000)
        try:
            self._write(
                spec,
                call_type,
                prompt,
                response,
                usage,
                cost,
                latency_ms,
                error,
                metadata,
                topic,
                is_batch,
                call_key,
                replay,
            )
        except AlreadyRecorded as exc:
            logger.warning(
                "AI call %s of stage %s was recorded by another execution of the stage first; this execution's "
                "provider call (cost %s) is not recorded.",
                call_key.rsplit(":", 1)[0] if call_key else "?",
                self.stage_pk,
                _fmt(cost) if cost is not None else "unpriced",
            )
            if check_budget and (cost or usage.total_tokens):
                self._check_budget(after=True)
            return exc.row
        if self._usage_sink is not None and call_type != "tool":
            self._usage_sink.add(cost or ZERO, usage.total_tokens)
        if check_budget and (cost or usage.total_tokens):
            self._check_budget(after=True)
        return None

    def _write(
        self,
        spec: ModelSpec,
        call_type: str,
        prompt: str | None,
        response: str | None,
        usage: Usage,
        cost: Decimal | None,
        latency_ms: int,
        error: str | None,
        metadata: dict[str, Any] | None,
        topic: str | None,
        is_batch: bool,
        call_key: str | None,
        replay: Any,
    ) -> None:
        row = record_call(
            topic=topic or self.topic,
            call_type=call_type,
            model_key=spec.key,
            model_id=spec.model_id,
            prompt=prompt,
            response=response,
            usage=usage,
            cost=cost,
            latency_ms=latency_ms,
            error=error,
            metadata=metadata,
            run_id=self.run_id,
            stage_pk=self.stage_pk,
            workflow_id=self.workflow_id,
            stage_key=self.stage_key,
            is_batch=is_batch,
            call_key=call_key,
            replay=replay,
        )
        self.remember_attribution(row)

    def remember_attribution(self, row: Any) -> None:
        """Keep the workflow and stage ids a recorded call was given, so later calls need not read them."""
        self.workflow_id = self.workflow_id or row.workflow_id
        self.stage_key = self.stage_key or row.stage_key


class TextStream:
    """An iterator of text chunks from :meth:`AIHelper.stream_text`; also a context manager.

    After the stream ends: ``text`` (everything), ``usage``, ``cost``, ``finish_reason``.
    """

    def __init__(
        self,
        helper: AIHelper,
        spec: ModelSpec,
        messages: list[dict[str, Any]],
        options: Any,
        prompt: str,
        call_key: str | None = None,
    ):
        self.text = ""
        self.usage: Usage | None = None
        self.cost: Decimal | None = None
        self.finish_reason: str | None = None
        self._gen = self._run(helper, spec, messages, dict(options), prompt, call_key)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._gen)

    def close(self) -> None:
        """Stop early; what was received so far is recorded."""
        self._gen.close()

    def __enter__(self) -> TextStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(
        self,
        helper: AIHelper,
        spec: ModelSpec,
        messages: list[dict[str, Any]],
        options: dict[str, Any],
        prompt: str,
        call_key: str | None,
    ) -> Iterator[str]:
        row, call_key = helper._lookup(call_key)
        if row is not None:  # recorded by an earlier execution of this stage: given back as one chunk
            self.usage, self.cost = helper._replayed(row)
            self.text, self.finish_reason = row.replay["text"], row.replay.get("finish_reason")
            if self.text:
                yield self.text
            return
        helper._check_budget()
        litellm = load_litellm()
        options.setdefault("stream_options", {"include_usage": True})
        started = time.monotonic()
        chunks: list[Any] = []
        parts: list[str] = []
        meta: dict[str, Any] = {"completed": False}
        try:
            stream = litellm.completion(
                model=spec.model_id, messages=messages, stream=True, **{**spec.params, **options}
            )
        except Exception as exc:
            helper._record_failure(spec, "stream", prompt, exc, started, {})
            raise
        error: BaseException | None = None
        try:
            for chunk in stream:
                chunks.append(chunk)
                if chunk.choices:
                    choice = chunk.choices[0]
                    if choice.finish_reason:
                        self.finish_reason = choice.finish_reason
                    piece = getattr(choice.delta, "content", None)
                    if piece:
                        parts.append(piece)
                        yield piece
            meta["completed"] = True
        except GeneratorExit:
            raise
        except Exception as exc:
            error = exc
            raise
        finally:
            self.text = "".join(parts)
            usage, cost = self._usage(litellm, spec, chunks, messages)
            self.usage, self.cost = usage, cost
            meta.update(stream_chunks=len(chunks), finish_reason=self.finish_reason)
            whole = meta["completed"] and error is None  # only a whole answer is memoized
            helper._record(
                spec,
                "stream",
                prompt,
                self.text,
                usage,
                cost,
                started,
                error=_error_text(error) if error is not None else None,
                metadata=meta,
                check_budget=meta["completed"],
                call_key=call_key if whole else None,
                replay={"text": self.text, "finish_reason": self.finish_reason} if whole and call_key else None,
            )

    @staticmethod
    def _usage(litellm: Any, spec: ModelSpec, chunks: list[Any], messages: list[Any]) -> tuple[Usage, Decimal | None]:
        if not chunks:
            return Usage(), ZERO
        try:
            built = litellm.stream_chunk_builder(chunks, messages=messages)
        except Exception:
            return Usage(), None
        usage = _usage_of(built)
        return usage, response_cost(spec, built, usage)


# -- recording --------------------------------------------------------------------------------------------


def apply_prompt_policy(text: str | None) -> str | None:
    """What an ``AICall`` row keeps of a prompt or response under ``WORKFLOW_ENGINE["AI_LOG_PROMPTS"]``."""
    from ..conf import settings

    policy = settings.AI_LOG_PROMPTS
    if text is None or policy is True:
        return text
    if policy == "redact":
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        return f"[redacted: {len(text)} chars, sha256 {digest}]"
    return None


def record_call(
    *,
    topic: str,
    call_type: str,
    model_key: str,
    model_id: str,
    prompt: str | None,
    response: str | None,
    usage: Usage,
    cost: Decimal | None,
    latency_ms: int | None = None,
    error: str | None = None,
    metadata: dict[str, Any] | None = None,
    run_id: str | None = None,
    stage_pk: str | None = None,
    workflow_id: str | None = None,
    stage_key: str | None = None,
    is_batch: bool = False,
    call_key: str | None = None,
    replay: Any = None,
) -> Any:
    """Write one ``AICall`` row and add its cost and tokens to the run's totals, in one transaction.

    ``workflow_id`` and ``stage_key`` (the run's workflow and the stage's definition id) are read from the run
    and stage rows when not given.

    Raises:
        AlreadyRecorded: a row with this ``call_key`` exists for the stage (another execution of the stage
            recorded the logical call first); nothing was written.
    """
    from django.db import IntegrityError, transaction
    from django.db.models import F
    from django.utils import timezone

    from ..models import AICall, WorkflowRun, WorkflowStage

    def write() -> Any:
        workflow = workflow_id
        if workflow is None and run_id:
            workflow = WorkflowRun.objects.filter(pk=run_id).values_list("workflow_id", flat=True).first()
        stage_id = stage_key
        if stage_id is None and stage_pk:
            stage_id = WorkflowStage.objects.filter(pk=stage_pk).values_list("stage_id", flat=True).first()
        row = AICall(
            created_at=timezone.now(),
            topic=topic[:300],
            call_type=call_type,
            model_key=model_key[:200],
            model_id=model_id[:200],
            prompt=apply_prompt_policy(prompt),
            response=apply_prompt_policy(response),
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_tokens=usage.cached_tokens,
            cost=cost,
            latency_ms=latency_ms,
            error=error,
            is_batch=is_batch,
            metadata=metadata or None,
            run_id=run_id,
            stage_id=stage_pk,
            workflow_id=workflow,
            stage_key=stage_id,
            call_key=call_key,
            replay=replay,
        )
        try:
            with transaction.atomic():
                row.save()
                if run_id and (cost or usage.total_tokens):
                    WorkflowRun.objects.filter(pk=run_id).update(
                        total_cost=F("total_cost") + (cost or ZERO),
                        total_tokens=F("total_tokens") + usage.total_tokens,
                    )
        except IntegrityError:
            winner = AICall.objects.filter(stage_id=stage_pk, call_key=call_key).first() if call_key else None
            if winner is None:
                raise
            raise AlreadyRecorded(winner) from None
        return row

    return _run_db(write)


def _fmt(value: Decimal) -> str:
    from .costs import display

    return display(value)


class StageUsage:
    """AI spend of one stage execution, kept on the stage context; the kernel stores it in the stage's
    metrics as ``ai_cost`` / ``ai_tokens`` / ``ai_calls``, added to what its earlier executions stored.

    With a stage row, the spend is read from its ``AICall`` rows (less what the stage's metrics already hold), so
    a call recorded by an execution that died before storing its metrics is counted once, and a call replayed
    from the journal is not counted again: the stage's metrics always sum its rows (tool rows aside)."""

    def __init__(self, stage_pk: str | None = None) -> None:
        self.stage_pk = stage_pk
        self.cost = ZERO
        self.tokens = 0
        self.calls = 0

    def add(self, cost: Decimal, tokens: int) -> None:
        self.cost += cost
        self.tokens += tokens
        self.calls += 1

    def metrics(self) -> dict[str, Any]:
        if self.stage_pk:
            return _run_db(self._unmetered)
        return {"ai_cost": _fmt(self.cost), "ai_tokens": self.tokens, "ai_calls": self.calls}

    def _unmetered(self) -> dict[str, Any]:
        from django.db.models import Count, F, Sum

        from ..models import AICall, WorkflowStage

        rows = (
            AICall.objects.filter(stage_id=self.stage_pk)
            .exclude(call_type="tool")
            .aggregate(cost=Sum("cost"), tokens=Sum(F("input_tokens") + F("output_tokens")), calls=Count("id"))
        )
        stored = WorkflowStage.objects.filter(pk=self.stage_pk).values_list("metrics", flat=True).first() or {}
        cost = (rows["cost"] or ZERO) - Decimal(str(stored.get("ai_cost") or 0))
        tokens = (rows["tokens"] or 0) - int(stored.get("ai_tokens") or 0)
        calls = rows["calls"] - int(stored.get("ai_calls") or 0)
        return {"ai_cost": _fmt(max(cost, ZERO)), "ai_tokens": max(tokens, 0), "ai_calls": max(calls, 0)}


def helper_for_context(ctx: Any) -> AIHelper:
    """The helper ``ctx.ai()`` returns: topic ``workflow.<run_id>.stage.<stage_id>``, linked to the run and
    stage rows. Helpers of one context share its :class:`StageUsage`."""
    sink = getattr(ctx, "ai_usage", None)
    if sink is None:
        sink = StageUsage(ctx.stage_record_id)
        ctx.ai_usage = sink
    journal = getattr(ctx, "ai_journal", None)
    if journal is None and isinstance(ctx, StageContext) and ctx.stage_record_id:
        # Only execute is memoized: check_completion is polled again on purpose, and records batch results
        # once by itself.
        journal = CallJournal(ctx.stage_record_id, scope_for(ctx.resume_state))
        ctx.ai_journal = journal
    return AIHelper(
        f"workflow.{ctx.run_id}.stage.{ctx.stage_id}",
        run_id=ctx.run_id,
        stage_pk=ctx.stage_record_id,
        usage_sink=sink,
        journal=journal,
        workflow_id=getattr(ctx, "workflow_id", None),
        stage_key=getattr(ctx, "stage_id", None),
    )


def create_ai_helper(topic: str, *, run: Any = None, stage: Any = None) -> AIHelper:
    """An AI helper outside a stage.

    Args:
        topic: free text grouping the calls, e.g. ``"task.nightly-digest"``.
        run: a ``WorkflowRun`` (or its id) whose totals and budget the calls count against.
        stage: a ``WorkflowStage`` (or its pk) to link the calls to.
    """
    run_id = getattr(run, "pk", run)
    stage_pk = getattr(stage, "pk", stage)
    if stage is not None and run_id is None and hasattr(stage, "run_id"):
        run_id = stage.run_id
    return AIHelper(
        topic,
        run_id=str(run_id) if run_id else None,
        stage_pk=str(stage_pk) if stage_pk else None,
        # From model instances when given; for bare ids they are read when a call is recorded.
        workflow_id=getattr(run, "workflow_id", None) if run is not None and not isinstance(run, str) else None,
        stage_key=getattr(stage, "stage_id", None) if stage is not None and not isinstance(stage, str) else None,
    )
