"""The AI helper: litellm calls with one ``AICall`` row per provider call, live run totals and budgets.

Every provider call is timed, priced and written as an :class:`~django_workflow_engine.models.AICall` row in a
short transaction that also adds its cost and tokens to the run's ``total_cost``/``total_tokens`` with
``F()`` expressions, so concurrent stages of one run never lose each other's spend (``recording.py``). Result
types live in ``results.py``, streaming in ``streaming.py``, tools in ``tools.py``, the stage's spend in
``usage.py``; their public names are importable from here too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ValidationError

from ..core.context import BaseContext, StageContext
from ..core.errors import format_validation_errors
from . import cache as response_cache
from .cache import key_for, ttl_seconds
from .costs import ModelSpec, load_litellm, resolve_model, response_cost
from .journal import CallJournal, completion_from, completion_payload, scope_for
from .ledger import CallLedger
from .prompts import Prompt, apply_prompt_policy, logged_prompt, messages_for, strip_fences
from .recording import CallRecord, elapsed_ms, record_call, write_call
from .results import (
    ZERO,
    AIError,
    EmbedResult,
    ObjectResult,
    StructuredOutputError,
    TextResult,
    ToolCall,
    Usage,
    row_usage,
    sum_costs,
    usage_of,
)
from .streaming import TextStream
from .tools import jsonable, run_tool, tool_from
from .traffic import Traffic, send
from .usage import StageUsage

DEFAULT_MAX_STEPS = 10


class AIHelper(CallLedger):
    """litellm-backed AI calls with cost tracking, for one topic (and optionally one run and stage).

    Create one with ``ctx.ai()`` inside a stage, or :func:`create_ai_helper` anywhere else. Every method takes
    a model key (a litellm model name such as ``"gpt-4o-mini"``, or a key of ``WORKFLOW_ENGINE["AI_MODELS"]``)
    and passes any other keyword arguments to litellm unchanged (``temperature``, ``max_tokens``,
    ``api_base``, ``num_retries``, ``mock_response``...).
    """

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
        fallbacks: Sequence[str] = (),
        cache: bool | float | None = None,
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
            fallbacks: model keys tried in order when a model is rate limited (``AI_RATE_LIMITS`` or a 429),
                times out or fails with a 5xx; each attempt is an ``AICall`` row, priced at the model that
                answered, and ``result.model`` names it.
            cache: ``True`` or a TTL in seconds: an identical request within the TTL is answered from the
                response cache (``False``: never; default: ``WORKFLOW_ENGINE["AI_CACHE"]``).
            **options: passed to ``litellm.completion`` unchanged.

        Raises:
            BudgetExceeded: the run's budget is spent (before the call) or this call passed it (after).
            RateLimited: every model is over its rate limit beyond ``AI_RATE_LIMIT_WAIT_SECONDS`` (inside a
                stage, the stage is deferred until then, without using a retry attempt).
            AIError: the tool loop did not finish within ``max_steps``.
            Exception: litellm's errors (``RateLimitError``...), re-raised after being recorded.
        """
        spec = resolve_model(model)
        messages = messages_for(prompt, system)
        callables = {t.name: t for t in (tool_from(f) for f in tools or () if callable(f))}
        if tools:
            options["tools"] = [t.spec for t in callables.values()] + [t for t in tools if not callable(t)]
            # litellm imports its MCP gateway (an optional dependency) whenever tools are passed, unless told
            # this is not an MCP call; plain function tools never are.
            options.setdefault("_skip_mcp_handler", True)
        usages: list[Usage] = []
        costs: list[Decimal | None] = []
        executed: list[ToolCall] = []
        prompt_text = logged_prompt(prompt, system)
        traffic = Traffic.of(fallbacks, cache)
        for step in range(1, max_steps + 1):
            response, usage, cost, answered = self._complete(
                spec, messages, options, "text", prompt_text, {"step": step}, traffic=traffic
            )
            usages.append(usage)
            costs.append(cost)
            message = response.choices[0].message
            calls = [c for c in (getattr(message, "tool_calls", None) or []) if c.function.name in callables]
            if not calls:
                return TextResult(
                    text=message.content or "",
                    usage=sum(usages, Usage()),
                    cost=sum_costs(costs),
                    model=answered,
                    finish_reason=response.choices[0].finish_reason,
                    tool_calls=tuple(executed),
                    steps=step,
                    raw=response,
                )
            messages.append(message.model_dump(exclude_none=True))
            for call in calls:
                executed.append(run_tool(self, spec, callables[call.function.name], call))
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": call.id,
                        "content": json.dumps(jsonable(executed[-1].result), default=str),
                    }
                )
        raise AIError(f"Model {model!r} was still calling tools after {max_steps} steps; raise max_steps or simplify.")

    def generate_object(
        self,
        model: str,
        prompt: Prompt,
        *,
        schema: type[BaseModel],
        system: str | None = None,
        fallbacks: Sequence[str] = (),
        cache: bool | float | None = None,
        **options: Any,
    ) -> ObjectResult:
        """Generate a validated instance of ``schema``.

        Models with native structured output (per litellm, or ``AI_MODELS[key]["supports_response_schema"]``)
        get ``response_format=schema``; others get JSON mode plus the JSON Schema in a system message. Output
        that does not validate gets one corrective retry that shows the model its errors. ``fallbacks`` and
        ``cache`` work as for :meth:`generate_text` (the request format follows the requested model).

        Raises:
            StructuredOutputError: still invalid after the retry; the message names the failing fields.
            BudgetExceeded, and litellm's errors, as for :meth:`generate_text`.
        """
        spec = resolve_model(model)
        traffic = Traffic.of(fallbacks, cache)
        if self._native_structured_output(spec):
            options.setdefault("response_format", schema)
            messages = messages_for(prompt, system)
        else:
            options.setdefault("response_format", {"type": "json_object"})
            instructions = "Reply with only a JSON object that validates against this JSON Schema:\n" + json.dumps(
                schema.model_json_schema()
            )
            messages = messages_for(prompt, f"{system}\n\n{instructions}" if system else instructions)
        prompt_text = logged_prompt(prompt, system)
        usages: list[Usage] = []
        costs: list[Decimal | None] = []
        errors: list[Any] = []

        def validate(text: str) -> str | None:
            try:
                schema.model_validate_json(strip_fences(text))
            except ValidationError as exc:
                return f"invalid structured output: {format_validation_errors(exc.errors())}"
            return None

        for attempt in (1, 2):
            response, usage, cost, answered = self._complete(
                spec,
                messages,
                options,
                "object",
                prompt_text,
                {"attempt": attempt},
                validate=validate,
                traffic=traffic,
            )
            usages.append(usage)
            costs.append(cost)
            try:
                parsed = schema.model_validate_json(strip_fences(response.choices[0].message.content or ""))
            except ValidationError as exc:
                errors[:] = exc.errors()
            else:
                return ObjectResult(
                    object=parsed,
                    usage=sum(usages, Usage()),
                    cost=sum_costs(costs),
                    model=answered,
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
        self,
        model: str,
        texts: str | Sequence[str],
        dimensions: int | None = None,
        *,
        fallbacks: Sequence[str] = (),
        cache: bool | float | None = None,
        **options: Any,
    ) -> EmbedResult:
        """Embed one text or many (one provider call for all of them).

        Args:
            dimensions: output size, for models that support it (``text-embedding-3-*``...).
            fallbacks, cache: as for :meth:`generate_text`.
            **options: passed to ``litellm.embedding`` unchanged.
        """
        spec = resolve_model(model)
        fallbacks = Traffic.of(fallbacks, cache).fallbacks
        items = [texts] if isinstance(texts, str) else list(texts)
        if dimensions is not None:
            options["dimensions"] = dimensions
        prompt_text = items[0] if len(items) == 1 else json.dumps(items, ensure_ascii=False)
        request: dict[str, Any] = {"input": items, "options": options}
        if fallbacks:
            request["fallbacks"] = list(fallbacks)
        row, key = self._lookup(self._key("embed", spec, request))
        if row is not None:
            usage, cost = self._replayed(row)
            return EmbedResult(embeddings=row.replay["embeddings"], usage=usage, cost=cost, model=model)
        specs = [spec, *map(resolve_model, fallbacks)]
        cache_ttl = ttl_seconds(cache)
        cache_key = key_for("embed", specs, request) if cache_ttl else None
        metadata: dict[str, Any] = {"text_count": len(items)}
        if cache_key is not None:
            hit = response_cache.lookup(cache_key)
            if hit is not None:
                payload, usage, cost = response_cache.answer(self, hit, spec, "embed", prompt_text, metadata, key)
                return EmbedResult(embeddings=payload["embeddings"], usage=usage, cost=cost, model=hit.model_id)
        self._check_budget()
        litellm = load_litellm()
        sent = send(
            self,
            specs,
            request,
            lambda s: litellm.embedding(model=s.model_id, input=items, **{**s.params, **options}),
            lambda s, exc, started, extra: self._record_failure(
                s, "embed", prompt_text, exc, started, {**metadata, **extra}
            ),
            in_stage=self._journal is not None,
        )
        response, answered = sent.response, sent.spec
        vectors = [list(d["embedding"] if isinstance(d, Mapping) else d.embedding) for d in response.data]
        usage = usage_of(response)
        sent.correct_tokens(usage.total_tokens)
        cost = response_cost(answered, response, usage)
        payload = {"embeddings": vectors}
        record = self._entry(
            answered,
            "embed",
            prompt=prompt_text,
            response=f"[{len(vectors)} embeddings, {len(vectors[0]) if vectors else 0} dims]",
            usage=usage,
            cost=cost,
            latency_ms=elapsed_ms(sent.started),
            metadata={**metadata, **sent.metadata, "dimensions": len(vectors[0]) if vectors else 0},
            call_key=key,
            replay=payload if key else None,
            sent_at=sent.sent_at,
        )
        self._record(record)
        if cache_key is not None and cache_ttl:
            response_cache.store(cache_key, "embed", answered, payload, usage, cost, cache_ttl)
        return EmbedResult(embeddings=vectors, usage=usage, cost=cost, model=answered.key, raw=response)

    def stream_text(self, model: str, prompt: Prompt, *, system: str | None = None, **options: Any) -> TextStream:
        """Stream text: iterate the returned :class:`TextStream` for chunks.

        The request is sent when iteration starts. Usage and cost are recorded exactly once, when the stream
        ends (or is closed early, with ``metadata.completed = false``); then ``stream.text``, ``stream.usage``
        and ``stream.cost`` are set. ``stream_options={"include_usage": True}`` is sent unless given.
        """
        spec = resolve_model(model)
        messages = messages_for(prompt, system)
        # The key is taken now, in call order, even though the request is sent when iteration starts.
        key = self._key("stream", spec, {"messages": messages, "options": options})
        return TextStream(self, spec, messages, options, logged_prompt(prompt, system), call_key=key)

    def submit_batch(self, model: str, requests: Sequence[Mapping[str, Any]], **options: Any) -> Any:
        """Submit a provider batch; see :func:`django_workflow_engine.ai.batch.submit_batch`."""
        from .batch import submit_batch

        return submit_batch(self, model, requests, **options)

    def get_batch_results(self, handle: Any, **options: Any) -> Any:
        """Poll a provider batch; see :func:`django_workflow_engine.ai.batch.get_batch_results`."""
        from .batch import get_batch_results

        return get_batch_results(self, handle, **options)

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
        traffic: Traffic | None = None,
    ) -> tuple[Any, Usage, Decimal | None, str]:
        """One provider call (or its journal replay, or a cache hit): the response, its usage and cost, and the
        key of the model that answered."""
        traffic = traffic or Traffic()
        request: dict[str, Any] = {"messages": messages, "options": options}
        if traffic.fallbacks:
            request["fallbacks"] = list(traffic.fallbacks)
        row, key = self._lookup(self._key(call_type, spec, request))
        if row is not None:
            usage, cost = self._replayed(row)
            return completion_from(row.replay), usage, cost, _answered(row.model_key, spec, traffic)
        specs = [spec, *map(resolve_model, traffic.fallbacks)]
        cache_ttl = ttl_seconds(traffic.cache)
        cache_key = key_for(call_type, specs, request) if cache_ttl else None
        if cache_key is not None:
            hit = response_cache.lookup(cache_key)
            if hit is not None:
                answer, usage, cost = response_cache.answer(self, hit, spec, call_type, prompt_text, metadata, key)
                by = next((s.key for s in specs if s.model_id == hit.model_id), spec.key)
                return answer, usage, cost, by
        self._check_budget()
        litellm = load_litellm()
        sent = send(
            self,
            specs,
            request,
            lambda s: litellm.completion(model=s.model_id, messages=messages, **{**s.params, **options}),
            lambda s, exc, started, extra: self._record_failure(
                s, call_type, prompt_text, exc, started, {**metadata, **extra}
            ),
            in_stage=self._journal is not None,
        )
        response, answered = sent.response, sent.spec
        usage = usage_of(response)
        sent.correct_tokens(usage.total_tokens)
        cost = response_cost(answered, response, usage)
        choice = response.choices[0]
        text = choice.message.content or ""
        error = validate(text) if validate is not None else None
        calls = getattr(choice.message, "tool_calls", None) or []
        shown = text or json.dumps([{"tool": c.function.name, "arguments": c.function.arguments} for c in calls])
        payload = completion_payload(response) if key or cache_key else None
        record = self._entry(
            answered,
            call_type,
            prompt=prompt_text,
            response=shown,
            usage=usage,
            cost=cost,
            latency_ms=elapsed_ms(sent.started),
            error=error,
            metadata={
                **metadata,
                **sent.metadata,
                "finish_reason": choice.finish_reason,
                "response_model": response.model,
            },
            call_key=key,
            replay=payload if key else None,
            sent_at=sent.sent_at,
        )
        winner = self._record(record)
        if winner is not None and winner.replay is not None:
            # Another execution of this stage recorded this call first: continue with its answer, so the
            # stage's result agrees with the ledger.
            return completion_from(winner.replay), row_usage(winner), winner.cost, winner.model_key
        if cache_key is not None and cache_ttl and error is None:
            response_cache.store(cache_key, call_type, answered, payload, usage, cost, cache_ttl)
        return response, usage, cost, answered.key


def _answered(model_key: str, spec: ModelSpec, traffic: Traffic) -> str:
    return model_key if model_key in (spec.key, *traffic.fallbacks) else spec.key


def helper_for_context(ctx: BaseContext) -> AIHelper:
    """The helper ``ctx.ai()`` returns: topic ``workflow.<run_id>.stage.<stage_id>``, linked to the run and
    stage rows. Helpers of one context share its :class:`StageUsage` and call journal."""
    sink = ctx.ai_usage
    if sink is None:
        sink = StageUsage(ctx.stage_record_id)
        ctx.ai_usage = sink
    journal = ctx.ai_journal if isinstance(ctx.ai_journal, CallJournal) else None
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
        workflow_id=ctx.workflow_id,
        stage_key=ctx.stage_id,
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


__all__ = [
    "DEFAULT_MAX_STEPS",
    "ZERO",
    "AIError",
    "AIHelper",
    "CallRecord",
    "EmbedResult",
    "ObjectResult",
    "Prompt",
    "StageUsage",
    "StructuredOutputError",
    "TextResult",
    "TextStream",
    "ToolCall",
    "Usage",
    "apply_prompt_policy",
    "create_ai_helper",
    "helper_for_context",
    "record_call",
    "write_call",
]
