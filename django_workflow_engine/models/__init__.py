from .ai_call import AICall
from .annotation import WorkflowAnnotation
from .artifact import WorkflowArtifact
from .idempotency import IdempotencyKey
from .job import WorkflowJob
from .log import WorkflowLog
from .outbox import OutboxEvent
from .run import WorkflowRun
from .stage import WorkflowStage
from .status import Status
from .worker import WorkflowWorker

__all__ = [
    "AICall",
    "IdempotencyKey",
    "OutboxEvent",
    "Status",
    "WorkflowAnnotation",
    "WorkflowArtifact",
    "WorkflowJob",
    "WorkflowLog",
    "WorkflowRun",
    "WorkflowStage",
    "WorkflowWorker",
]
