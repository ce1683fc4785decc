"""AI calls on litellm with cost tracking.

``ctx.ai()`` inside a stage, or :func:`create_ai_helper` anywhere. Importing this package imports neither
litellm nor the models: both load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .helper import AIHelper

_LAZY = {
    "AIHelper": "helper",
    "AIError": "helper",
    "StructuredOutputError": "helper",
    "TextResult": "helper",
    "ObjectResult": "helper",
    "EmbedResult": "helper",
    "TextStream": "helper",
    "ToolCall": "helper",
    "Usage": "helper",
    "BatchHandle": "batch",
    "BatchItem": "batch",
    "BatchResults": "batch",
}


def create_ai_helper(topic: str, *, run: Any = None, stage: Any = None) -> AIHelper:
    """An AI helper for ``topic`` (e.g. ``"task.nightly-digest"``), optionally counting against a run.

    Args:
        topic: groups the calls; ``AICall.objects.for_topic(prefix)`` finds them.
        run: a ``WorkflowRun`` or its id: calls add to its totals and respect its budget.
        stage: a ``WorkflowStage`` or its pk to link the calls to.
    """
    from .helper import create_ai_helper as create

    return create(topic, run=run, stage=stage)


def preload() -> None:
    """Import litellm now (workers call this once, before forking, so jobs do not pay the import)."""
    from .costs import load_litellm

    load_litellm()


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)


__all__ = ["create_ai_helper", "preload", *_LAZY]
