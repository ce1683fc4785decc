"""Outbox events. Types follow the reference (``workflow:created``, ``stage:completed`` ...).

Every event is a JSON dict with ``type``, ``timestamp`` (ISO 8601) and ``workflow_run_id``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

WORKFLOW_CREATED = "workflow:created"
WORKFLOW_STARTED = "workflow:started"
WORKFLOW_COMPLETED = "workflow:completed"
WORKFLOW_FAILED = "workflow:failed"
WORKFLOW_CANCELLED = "workflow:cancelled"
WORKFLOW_SUSPENDED = "workflow:suspended"
STAGE_STARTED = "stage:started"
STAGE_COMPLETED = "stage:completed"
STAGE_SUSPENDED = "stage:suspended"
STAGE_FAILED = "stage:failed"
STAGE_PROGRESS = "stage:progress"
ANNOTATION_CREATED = "annotation:created"
SIGNAL_RECEIVED = "signal:received"
STAGE_RESUMED = "stage:resumed"

EVENT_TYPES = (
    WORKFLOW_CREATED,
    WORKFLOW_STARTED,
    WORKFLOW_COMPLETED,
    WORKFLOW_FAILED,
    WORKFLOW_CANCELLED,
    WORKFLOW_SUSPENDED,
    STAGE_STARTED,
    STAGE_COMPLETED,
    STAGE_SUSPENDED,
    STAGE_FAILED,
    STAGE_PROGRESS,
    ANNOTATION_CREATED,
    SIGNAL_RECEIVED,
    STAGE_RESUMED,
)


def event(type: str, run_id: str, now: datetime, **fields: Any) -> dict[str, Any]:
    """Build an event dict; ``None`` fields are dropped."""
    data: dict[str, Any] = {"type": type, "timestamp": now.isoformat(), "workflow_run_id": run_id}
    data.update({k: v for k, v in fields.items() if v is not None})
    return data
