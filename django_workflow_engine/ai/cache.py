"""The response cache (opt-in): an identical request within the TTL is answered from the database.

Identical means the same call type, models (the requested one and its fallbacks), messages or input and
parameters, hashed like the call journal hashes requests (``api_key``, ``timeout``, retries... left out). A hit is
recorded as an ``AICall`` with ``cached=True``, cost 0 and ``saved_cost`` the price of the call it replaced; it
is not counted against rate limits or the run's budget. Only successful answers are kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .costs import ModelSpec
from .journal import completion_from, request_hash
from .recording import run_sync
from .results import ZERO, Usage, row_usage

if TYPE_CHECKING:
    from .ledger import CallLedger

DEFAULT_TTL_SECONDS = 3600.0


def ttl_seconds(per_call: bool | float | None) -> float | None:
    """The TTL of a call's cache entry, or ``None`` when it is not cached.

    ``cache=False`` turns it off for the call, ``cache=True`` on (with ``AI_CACHE``'s TTL when that is a number,
    else an hour), ``cache=<seconds>`` on with that TTL; without ``cache=``, ``AI_CACHE`` decides.
    """
    from ..conf import settings

    setting = settings.AI_CACHE
    default = (
        float(setting) if isinstance(setting, int | float) and not isinstance(setting, bool) else DEFAULT_TTL_SECONDS
    )
    choice = setting if per_call is None else per_call
    if choice is None or choice is False:
        return None
    if choice is True:
        return default
    if isinstance(choice, int | float) and choice > 0:
        return float(choice)
    raise ValueError(f"cache= must be True, False or a positive number of seconds, got {choice!r}")


def key_for(call_type: str, specs: Sequence[ModelSpec], request: Mapping[str, Any]) -> str:
    return request_hash({"type": call_type, "models": [s.model_id for s in specs], **dict(request)})


def lookup(key: str) -> Any:
    """The live cache entry for ``key``, or ``None``."""
    from django.utils import timezone

    from ..models import AIResponseCache

    return run_sync(lambda: AIResponseCache.objects.live(timezone.now()).filter(key=key).first())


def store(
    key: str, call_type: str, spec: ModelSpec, payload: Any, usage: Any, cost: Decimal | None, ttl: float
) -> None:
    """Keep an answer for ``ttl`` seconds (replacing an expired entry)."""
    from django.utils import timezone

    from ..models import AIResponseCache

    now = timezone.now()
    fields = {
        "call_type": call_type,
        "model_id": spec.model_id[:200],
        "payload": payload,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cost": cost,
        "created_at": now,
        "expires_at": now + timedelta(seconds=ttl),
    }
    run_sync(lambda: AIResponseCache.objects.update_or_create(key=key, defaults=fields))


def answer(
    ledger: CallLedger,
    hit: Any,
    spec: ModelSpec,
    call_type: str,
    prompt_text: str,
    metadata: dict[str, Any],
    key: str | None,
) -> tuple[Any, Usage, Decimal | None]:
    """A cached answer, recorded as a call with ``cached=True``, cost 0, no tokens (the provider was not asked;
    ``metadata["saved_tokens"]`` keeps what the original used) and ``saved_cost``."""
    usage = Usage()
    response = completion_from(hit.payload) if call_type != "embed" else hit.payload
    shown = (
        f"[{len(hit.payload['embeddings'])} embeddings, cached]"
        if call_type == "embed"
        else response.choices[0].message.content or ""
    )
    record = ledger._entry(
        spec,
        call_type,
        prompt=prompt_text,
        response=shown,
        usage=usage,
        cost=ZERO,
        latency_ms=0,
        metadata={
            **metadata,
            "cache": "hit",
            "answered_by": hit.model_id,
            "saved_tokens": hit.input_tokens + hit.output_tokens,
        },
        call_key=key,
        replay=hit.payload if key else None,
        cached=True,
        saved_cost=hit.cost,
    )
    winner = ledger._record(record)
    if winner is not None and winner.replay is not None:
        return (
            (completion_from(winner.replay) if call_type != "embed" else winner.replay),
            row_usage(winner),
            winner.cost,
        )
    return response, usage, ZERO
