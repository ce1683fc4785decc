"""Definitions: stages, workflows, contexts and errors. Imports nothing from Django."""

from .batch import CompletionError, NotReady, Ready, Suspend, define_async_batch_stage
from .context import CheckContext, StageContext, StageStorage
from .stage import Stage, StageResult, define_stage
from .workflow import ConfigValidation, Workflow, WorkflowBuilder

__all__ = [
    "CheckContext",
    "CompletionError",
    "ConfigValidation",
    "NotReady",
    "Ready",
    "Stage",
    "StageContext",
    "StageResult",
    "StageStorage",
    "Suspend",
    "Workflow",
    "WorkflowBuilder",
    "define_async_batch_stage",
    "define_stage",
]
