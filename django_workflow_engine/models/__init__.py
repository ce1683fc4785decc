from .ai_call import AICall
from .ai_traffic import AIRateLimitBucket, AIRateLimitGrant, AIResponseCache
from .annotation import WorkflowAnnotation
from .artifact import WorkflowArtifact
from .idempotency import IdempotencyKey
from .job import WorkflowJob
from .log import WorkflowLog
from .outbox import OutboxEvent
from .run import WorkflowRun
from .schedule import WorkflowSchedule
from .signal import WorkflowSignal
from .stage import WorkflowStage
from .status import Status
from .worker import WorkflowWorker

__all__ = [
    "AICall",
    "AIRateLimitBucket",
    "AIRateLimitGrant",
    "AIResponseCache",
    "IdempotencyKey",
    "OutboxEvent",
    "Status",
    "WorkflowAnnotation",
    "WorkflowArtifact",
    "WorkflowJob",
    "WorkflowLog",
    "WorkflowRun",
    "WorkflowSchedule",
    "WorkflowSignal",
    "WorkflowStage",
    "WorkflowWorker",
]
