"""litellm loading, model resolution, pricing and budgets.

Prices come from litellm's bundled price map (never fetched: ``LITELLM_LOCAL_MODEL_COST_MAP`` is set before the
first import) and, for custom or private models, from ``WORKFLOW_ENGINE["AI_MODELS"]``, which is read here on
every call and never written into litellm's global ``model_cost``. A price that cannot be found is ``None``
(stored as a NULL cost: "unpriced"), never zero.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

MONEY_QUANTUM = Decimal("1e-10")  # AICall.cost and WorkflowRun.total_cost keep 10 decimal places
PRICE_KEYS = (
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "input_cost_per_token_batches",
    "output_cost_per_token_batches",
)
_lock = threading.Lock()
_litellm: Any = None


def load_litellm() -> Any:
    """Import litellm once, with the bundled price map and without its stdout banners."""
    global _litellm
    if _litellm is None:
        with _lock:
            if _litellm is None:
                # Must be set before the first import, or litellm downloads a price map from the internet.
                os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
                import litellm

                litellm.suppress_debug_info = True
                _litellm = litellm
    return _litellm


@dataclass(frozen=True)
class ModelSpec:
    """How a model key is called and priced.

    Attributes:
        key: what the caller passed (``"gpt-4o-mini"``, ``"my-model"``); stored as ``AICall.model_key``.
        model_id: the litellm model string that is called (``AI_MODELS[key]["model"]``, default ``key``).
        prices: per-token prices from ``AI_MODELS`` (empty: use litellm's map).
        params: default litellm keyword arguments from ``AI_MODELS[key]["litellm_params"]`` (api_base ...).
        structured_output: ``AI_MODELS[key]["supports_response_schema"]``, or ``None`` to ask litellm.
    """

    key: str
    model_id: str
    prices: Mapping[str, Decimal] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    structured_output: bool | None = None


def resolve_model(key: str) -> ModelSpec:
    """The :class:`ModelSpec` for ``key``, from ``WORKFLOW_ENGINE["AI_MODELS"]`` when it is listed there."""
    from ..conf import settings

    entry = (settings.AI_MODELS or {}).get(key)
    if not entry:
        return ModelSpec(key=key, model_id=key)
    prices = {name: to_decimal(entry[name]) for name in PRICE_KEYS if entry.get(name) is not None}
    return ModelSpec(
        key=key,
        model_id=str(entry.get("model") or key),
        prices=prices,
        params=dict(entry.get("litellm_params") or {}),
        structured_output=entry.get("supports_response_schema"),
    )


def to_decimal(value: Any) -> Decimal:
    # repr() of a float is its shortest round-tripping form: 1.5e-07 -> Decimal("1.5E-7"), not the binary noise.
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))


def money(value: Any) -> Decimal | None:
    """``value`` as a Decimal with the 10 decimal places money is stored with (``None`` stays ``None``)."""
    if value is None:
        return None
    try:
        return to_decimal(value).quantize(MONEY_QUANTUM)
    except InvalidOperation:
        return None


def response_cost(spec: ModelSpec, response: Any, usage: Any) -> Decimal | None:
    """Cost of one completion or embedding response; ``None`` when the model has no known price.

    ``AI_MODELS`` prices win; otherwise ``litellm.completion_cost`` prices the response from the bundled map
    (it raises ``ModelNotMappedError`` for unknown models, which means unpriced, not free).
    """
    if spec.prices:
        return _per_token_cost(spec.prices, usage, batch=False)
    litellm = load_litellm()
    try:
        return money(litellm.completion_cost(completion_response=response))
    except Exception:
        return None


def batch_cost(spec: ModelSpec, usage: Any) -> Decimal | None:
    """Cost of one batch request: its usage times the ``*_batches`` prices (``AI_MODELS`` or the map)."""
    prices: Mapping[str, Any] = spec.prices
    if not prices:
        litellm = load_litellm()
        try:
            info = litellm.get_model_info(spec.model_id)
        except Exception:
            return None
        prices = {k: to_decimal(info[k]) for k in PRICE_KEYS if info.get(k) is not None}
    return _per_token_cost(prices, usage, batch=True)


def _per_token_cost(prices: Mapping[str, Any], usage: Any, *, batch: bool) -> Decimal | None:
    suffix = "_batches" if batch else ""
    input_price = prices.get(f"input_cost_per_token{suffix}")
    output_price = prices.get(f"output_cost_per_token{suffix}")
    if input_price is None or (output_price is None and usage.output_tokens):
        return None
    cached = usage.cached_tokens if not batch else 0
    cache_price = prices.get("cache_read_input_token_cost")
    if cache_price is None:
        cached = 0
    cost = Decimal(usage.input_tokens - cached) * Decimal(input_price)
    cost += Decimal(cached) * Decimal(cache_price or 0)
    cost += Decimal(usage.output_tokens) * Decimal(output_price or 0)
    return money(cost)


def default_budget(workflow_id: str | None) -> Decimal | None:
    """``WORKFLOW_ENGINE["AI_DEFAULT_MAX_COST"]`` for ``workflow_id`` (a number, or a dict by workflow id)."""
    from ..conf import settings

    value = settings.AI_DEFAULT_MAX_COST
    if isinstance(value, Mapping):
        value = value.get(workflow_id or "")
    return money(value)


def display(value: Decimal | None) -> str:
    """``Decimal("0.0000450000")`` -> ``"0.000045"``; ``None`` -> ``"unpriced"``."""
    if value is None:
        return "unpriced"
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"
