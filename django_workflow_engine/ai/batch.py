"""Provider batches over litellm's file and batch API (OpenAI-compatible ``/files`` + ``/batches``).

Designed for an async-batch stage: ``submit_batch`` in ``execute`` and ``Suspend(state=handle.to_state())``,
then ``get_batch_results(state)`` in ``check_completion`` until ``results.done``. Each request's usage is
recorded once, when the results are first read, as an ``AICall`` row with ``call_type="batch"``,
``is_batch=True`` and the model's batch prices (``*_batches`` in litellm's map or ``AI_MODELS``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ValidationError

from ..core.errors import format_validation_errors
from .costs import ModelSpec, batch_cost, load_litellm, resolve_model
from .ledger import CallLedger
from .prompts import messages_for, strip_fences
from .recording import elapsed_ms, run_sync
from .results import ZERO, AIError, Usage, sum_costs, usage_of

# Options that configure the connection (file and batch calls) rather than each request's body.
CONNECTION_KEYS = frozenset(
    {"api_base", "api_key", "api_version", "organization", "extra_headers", "timeout", "custom_llm_provider"}
)
FINISHED = frozenset({"completed", "failed", "expired", "cancelled"})
ENDPOINT = "/v1/chat/completions"


@dataclass(frozen=True)
class BatchHandle:
    """A submitted batch. ``to_state()`` is JSON for ``Suspend(state=...)``; ``from_state`` reads it back."""

    batch_id: str
    model: str
    provider: str
    input_file_id: str
    request_ids: tuple[str, ...]
    submitted_at: float

    def to_state(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "model": self.model,
            "provider": self.provider,
            "input_file_id": self.input_file_id,
            "request_ids": list(self.request_ids),
            "submitted_at": self.submitted_at,
        }

    @classmethod
    def from_state(cls, state: BatchHandle | Mapping[str, Any]) -> BatchHandle:
        if isinstance(state, BatchHandle):
            return state
        data = state.get("batch", state) if "batch_id" not in state else state
        return cls(
            batch_id=data["batch_id"],
            model=data["model"],
            provider=data["provider"],
            input_file_id=data.get("input_file_id", ""),
            request_ids=tuple(data.get("request_ids") or ()),
            submitted_at=float(data.get("submitted_at") or 0),
        )


@dataclass(frozen=True)
class BatchItem:
    """One request's result: ``text`` (and ``object`` when a schema was given), or ``error``."""

    id: str
    text: str | None
    usage: Usage
    cost: Decimal | None
    error: str | None = None
    object: Any = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class BatchResults:
    """What ``get_batch_results`` returns.

    Attributes:
        status: the provider's status (``validating``, ``in_progress``, ``finalizing``, ``completed``,
            ``failed``, ``expired``, ``cancelling``, ``cancelled``).
        items: one :class:`BatchItem` per request, in submission order, once ``completed``.
    """

    status: str
    items: tuple[BatchItem, ...] = ()
    batch_id: str = ""
    raw: Any = field(default=None, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """The provider has finished (successfully or not): stop polling."""
        return self.status in FINISHED

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def usage(self) -> Usage:
        return sum((i.usage for i in self.items), Usage())

    @property
    def cost(self) -> Decimal | None:
        return sum_costs([i.cost for i in self.items]) if self.items else ZERO

    def by_id(self) -> dict[str, BatchItem]:
        return {item.id: item for item in self.items}


def _split(spec: ModelSpec, options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    merged = {**spec.params, **options}
    connection = {k: v for k, v in merged.items() if k in CONNECTION_KEYS}
    body = {k: v for k, v in merged.items() if k not in CONNECTION_KEYS}
    return connection, body


def _response_format(schema: type[BaseModel]) -> dict[str, Any]:
    from litellm.utils import type_to_response_format_param

    return dict(type_to_response_format_param(schema) or {})


def submit_batch(
    helper: CallLedger,
    model: str,
    requests: Sequence[Mapping[str, Any]],
    *,
    system: str | None = None,
    schema: type[BaseModel] | None = None,
    **options: Any,
) -> BatchHandle:
    """Upload the requests as a JSONL file and create a provider batch for them.

    Args:
        model: model key (``AI_MODELS`` keys work; their ``litellm_params`` are used).
        requests: ``[{"id": "doc-1", "prompt": "..."}]``; ``prompt`` may be chat messages; an optional
            ``"options"`` dict adds body fields for that request only.
        system: a system message for every request.
        schema: a pydantic model: every request asks for structured output, and results are validated.
        **options: connection options (``api_base``, ``api_key``...) go to the file and batch calls, the rest
            into every request body (``max_tokens``, ``temperature``...).

    Raises:
        BudgetExceeded: the run's budget is already spent.
        ValueError: requests are empty or their ids are missing or repeated.
    """
    ids = [str(r.get("id") or "") for r in requests]
    if not ids or "" in ids or len(set(ids)) != len(ids):
        raise ValueError("submit_batch needs at least one request, each with a unique non-empty 'id'.")
    spec = resolve_model(model)
    litellm = load_litellm()
    connection, body_options = _split(spec, options)
    model_name, provider, _, _ = litellm.get_llm_provider(spec.model_id)
    provider = connection.pop("custom_llm_provider", provider)
    if schema is not None:
        body_options.setdefault("response_format", _response_format(schema))
    lines = []
    for request, request_id in zip(requests, ids, strict=True):
        body = {
            "model": model_name,
            "messages": messages_for(request["prompt"], system),
            **body_options,
            **dict(request.get("options") or {}),
        }
        lines.append(json.dumps({"custom_id": request_id, "method": "POST", "url": ENDPOINT, "body": body}))
    # Inside a stage's execute the submission is journaled: a re-executed stage gets its handle back
    # instead of submitting (and paying for) the batch twice.
    row, key = helper._lookup(helper._key("batch", spec, {"lines": lines, "options": connection}))
    if row is not None:
        return BatchHandle.from_state(row.replay)
    helper._check_budget()
    started = time.monotonic()
    try:
        uploaded = litellm.create_file(
            file=("batch.jsonl", "\n".join(lines).encode(), "application/jsonl"),
            purpose="batch",
            custom_llm_provider=provider,
            **connection,
        )
        batch = litellm.create_batch(
            completion_window="24h",
            endpoint=ENDPOINT,
            input_file_id=uploaded.id,
            custom_llm_provider=provider,
            **connection,
        )
    except Exception as exc:
        helper._record_failure(spec, "batch", f"[{len(ids)} requests]", exc, started, {"phase": "submit"})
        raise
    handle = BatchHandle(
        batch_id=batch.id,
        model=model,
        provider=provider,
        input_file_id=uploaded.id,
        request_ids=tuple(ids),
        submitted_at=time.time(),
    )
    if key is not None:
        record = helper._entry(
            spec,
            "batch",
            prompt=f"[{len(ids)} requests]",
            response=f"[batch {batch.id}]",
            latency_ms=elapsed_ms(started),
            metadata={"phase": "submit", "batch_id": batch.id, "requests": len(ids)},
            call_key=key,
            replay=handle.to_state(),
        )
        helper._record(record, check_budget=False)
    return handle


def get_batch_results(
    helper: CallLedger,
    handle: BatchHandle | Mapping[str, Any],
    *,
    schema: type[BaseModel] | None = None,
    **options: Any,
) -> BatchResults:
    """Poll a batch; when it is ``completed``, download, parse and record its results (recorded only once,
    however often this is called).

    Args:
        handle: the :class:`BatchHandle` or its ``to_state()`` dict.
        schema: validate each result's JSON into this pydantic model (``item.object``).
        **options: connection options (``api_base``, ``api_key``...), as given to ``submit_batch``.
    """
    handle = BatchHandle.from_state(handle)
    spec = resolve_model(handle.model)
    litellm = load_litellm()
    connection, _ = _split(spec, options)
    connection.pop("custom_llm_provider", None)
    batch = litellm.retrieve_batch(handle.batch_id, custom_llm_provider=handle.provider, **connection)
    status = str(batch.status)
    if status != "completed":
        return BatchResults(status=status, batch_id=handle.batch_id, raw=batch)
    lines: list[dict[str, Any]] = []
    for file_id in (batch.output_file_id, getattr(batch, "error_file_id", None)):
        if file_id:
            content = litellm.file_content(file_id, custom_llm_provider=handle.provider, **connection)
            lines += [json.loads(line) for line in content.content.decode().splitlines() if line.strip()]
    parsed: dict[Any, BatchItem] = {line.get("custom_id"): _item(spec, line, schema) for line in lines}
    order = list(handle.request_ids) or list(parsed)
    missing = [i for i in order if i not in parsed]
    items = [parsed[i] for i in order if i in parsed]
    items += [BatchItem(id=i, text=None, usage=Usage(), cost=ZERO, error="no result returned") for i in missing]
    _record_once(helper, spec, handle, items)
    return BatchResults(status=status, items=tuple(items), batch_id=handle.batch_id, raw=batch)


def _item(spec: ModelSpec, line: Mapping[str, Any], schema: type[BaseModel] | None) -> BatchItem:
    request_id = str(line.get("custom_id"))
    response = line.get("response") or {}
    body = response.get("body") or {}
    error = line.get("error")
    if error or response.get("status_code", 200) >= 400:
        message = (error or body.get("error") or {}).get("message") if isinstance(error or body, Mapping) else None
        return BatchItem(id=request_id, text=None, usage=Usage(), cost=ZERO, error=str(message or error or body))
    load_litellm()
    from litellm.types.utils import ModelResponse

    model_response = ModelResponse(**body)
    usage = usage_of(model_response)
    text = model_response.choices[0].message.content or ""
    obj = None
    problem = None
    if schema is not None:
        try:
            obj = schema.model_validate_json(strip_fences(text))
        except ValidationError as exc:
            problem = f"invalid structured output: {format_validation_errors(exc.errors())}"
    return BatchItem(id=request_id, text=text, usage=usage, cost=batch_cost(spec, usage), error=problem, object=obj)


def _record_once(helper: CallLedger, spec: ModelSpec, handle: BatchHandle, items: Sequence[BatchItem]) -> None:
    from ..models import AICall

    def recorded() -> bool:
        return AICall.objects.filter(is_batch=True, metadata__batch_id=handle.batch_id).exists()

    if run_sync(recorded):
        return
    latency = int((time.time() - handle.submitted_at) * 1000) if handle.submitted_at else None
    for item in items:
        record = helper._entry(
            spec,
            "batch",
            prompt=None,
            response=item.text,
            usage=item.usage,
            cost=item.cost,
            latency_ms=latency,
            error=item.error,
            metadata={"batch_id": handle.batch_id, "request_id": item.id, "provider": handle.provider},
            is_batch=True,
        )
        helper._record(record, check_budget=False)


__all__ = ["AIError", "BatchHandle", "BatchItem", "BatchResults", "get_batch_results", "submit_batch"]
