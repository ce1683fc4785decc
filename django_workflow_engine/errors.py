"""Every exception the engine raises for something a caller can fix. All subclass ``WorkflowEngineError``."""

from .core.errors import (
    BlobNotFound,
    BudgetExceeded,
    IdempotencyInProgressError,
    InvalidBlobKey,
    InvalidConfig,
    InvalidInput,
    InvalidOutput,
    InvalidRunState,
    MissingStageOutput,
    RunNotFound,
    StageNotFound,
    StaleVersionError,
    ValidationFailed,
    WorkflowDefinitionError,
    WorkflowEngineError,
    WorkflowNotFound,
)

__all__ = [
    "BlobNotFound",
    "BudgetExceeded",
    "IdempotencyInProgressError",
    "InvalidBlobKey",
    "InvalidConfig",
    "InvalidInput",
    "InvalidOutput",
    "InvalidRunState",
    "MissingStageOutput",
    "RunNotFound",
    "StageNotFound",
    "StaleVersionError",
    "ValidationFailed",
    "WorkflowDefinitionError",
    "WorkflowEngineError",
    "WorkflowNotFound",
]
