"""django-workflow-engine: durable, typed, multi-stage AI pipelines for Django.

Everything here imports without Django being set up; ``engine`` touches Django only when used.
"""

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

# Binding the instance here (after the submodule import) keeps ``from django_workflow_engine import engine``
# the Engine object rather than the ``engine`` module. engine.py imports nothing from Django at load time.
from .engine import Engine, engine

__version__ = "0.1.0"

__all__ = [
    "BudgetExceeded",
    "CheckContext",
    "CompletionError",
    "Engine",
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
