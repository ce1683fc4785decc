"""django-workflow-engine: durable, typed, multi-stage AI pipelines for Django.

Everything here imports without Django being set up; ``engine`` touches Django only when used, and
``WorkflowRun``, ``Status`` and ``create_ai_helper`` are imported on first access (the models need
``django.setup()``; the AI helper imports litellm only when it makes a call).
"""

import sys
from typing import TYPE_CHECKING, Any

from .core.batch import CompletionError, NotReady, Ready, Suspend, define_async_batch_stage, wait_for_children
from .core.context import CheckContext, StageContext
from .core.errors import (
    BudgetExceeded,
    IdempotencyInProgressError,
    InvalidConfig,
    InvalidInput,
    InvalidRunState,
    NonRetryableError,
    RateLimited,
    RunNotFound,
    RunNotRunning,
    SignalNotExpected,
    StageDeferred,
    StageNotFound,
    StageTimedOut,
    WorkflowEngineError,
    WorkflowNotFound,
)
from .core.retry import RetryPolicy
from .core.signal import define_signal_stage
from .core.stage import Stage, StageResult, define_stage
from .core.version import VERSION
from .core.workflow import Workflow, WorkflowBuilder

# The module is ``facade`` so that ``django_workflow_engine.engine`` is only ever the Engine instance (patch the
# module's names as ``django_workflow_engine.facade.X``). facade.py imports nothing from Django at load time.
from .facade import Engine, engine

# ``from django_workflow_engine.engine import Engine`` (the module's old name) keeps working.
sys.modules.setdefault(f"{__name__}.engine", sys.modules[f"{__name__}.facade"])

if TYPE_CHECKING:
    from .ai import create_ai_helper
    from .models import WorkflowRun
    from .models.status import Status

_LAZY = {
    "WorkflowRun": ("models", "WorkflowRun"),
    "Status": ("models.status", "Status"),
    "create_ai_helper": ("ai", "create_ai_helper"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    module, attribute = _LAZY[name]
    value = getattr(import_module(f"{__name__}.{module}"), attribute)
    globals()[name] = value
    return value


__version__ = VERSION

__all__ = [
    "BudgetExceeded",
    "CheckContext",
    "CompletionError",
    "Engine",
    "IdempotencyInProgressError",
    "InvalidConfig",
    "InvalidInput",
    "InvalidRunState",
    "NonRetryableError",
    "NotReady",
    "RateLimited",
    "Ready",
    "RetryPolicy",
    "RunNotFound",
    "RunNotRunning",
    "SignalNotExpected",
    "Stage",
    "StageContext",
    "StageDeferred",
    "StageNotFound",
    "StageResult",
    "StageTimedOut",
    "Status",
    "Suspend",
    "Workflow",
    "WorkflowBuilder",
    "WorkflowEngineError",
    "WorkflowNotFound",
    "WorkflowRun",
    "create_ai_helper",
    "define_async_batch_stage",
    "define_signal_stage",
    "define_stage",
    "engine",
    "wait_for_children",
]
