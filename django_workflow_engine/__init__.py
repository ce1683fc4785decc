"""django-workflow-engine: durable, typed, multi-stage AI pipelines for Django.

The definitions (``define_stage``, ``WorkflowBuilder``...) import without Django being set up; ``engine``
and the models are resolved lazily on first access.
"""

from typing import TYPE_CHECKING, Any

from .core.batch import CompletionError, NotReady, Ready, Suspend, define_async_batch_stage
from .core.context import CheckContext, StageContext
from .core.errors import (
    BudgetExceeded,
    IdempotencyInProgressError,
    InvalidConfig,
    InvalidInput,
    InvalidRunState,
    RunNotFound,
    StageNotFound,
    WorkflowEngineError,
    WorkflowNotFound,
)
from .core.stage import Stage, StageResult, define_stage
from .core.workflow import Workflow, WorkflowBuilder

if TYPE_CHECKING:
    from .engine import Engine

__version__ = "0.1.0"

__all__ = [
    "BudgetExceeded",
    "CheckContext",
    "CompletionError",
    "IdempotencyInProgressError",
    "InvalidConfig",
    "InvalidInput",
    "InvalidRunState",
    "NotReady",
    "Ready",
    "RunNotFound",
    "Stage",
    "StageContext",
    "StageNotFound",
    "StageResult",
    "Suspend",
    "Workflow",
    "WorkflowBuilder",
    "WorkflowEngineError",
    "WorkflowNotFound",
    "define_async_batch_stage",
    "define_stage",
    "engine",
]


def __getattr__(name: str) -> Any:
    if name == "engine":
        from .engine import engine

        return engine
    raise AttributeError(f"module 'django_workflow_engine' has no attribute {name!r}")
