"""Model rows to the kernel's records (and the record fields each model carries)."""

from __future__ import annotations

import copy
import json
from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from ..kernel.records import (
    AnnotationRecord,
    OutboxRecord,
    RunRecord,
    StageRecord,
)
from ..models import (
    OutboxEvent,
    WorkflowAnnotation,
    WorkflowRun,
    WorkflowStage,
)

# Field values nothing can change in place: a row shares them with its record instead of copying them.
_IMMUTABLE = frozenset({str, int, float, bool, type(None), datetime, Decimal})

RUN_FIELDS = [f.name for f in fields(RunRecord)]
STAGE_FIELDS = [f.name for f in fields(StageRecord)]


def detached(value: Any) -> Any:
    """``value`` itself, or a deep copy where it could change in place (a JSON field's dict or list)."""
    return value if type(value) in _IMMUTABLE else copy.deepcopy(value)


def run_record(row: WorkflowRun) -> RunRecord:
    return RunRecord(**{name: getattr(row, name) for name in RUN_FIELDS})


def stage_record(row: WorkflowStage) -> StageRecord:
    return StageRecord(**{name: getattr(row, name) for name in STAGE_FIELDS})


def outbox_record(r: OutboxEvent) -> OutboxRecord:
    return OutboxRecord(
        id=r.id,
        run_id=r.run_id,
        sequence=r.sequence,
        event_type=r.event_type,
        payload=r.payload,
        causation_id=r.causation_id,
        occurred_at=r.occurred_at,
        published_at=r.published_at,
        retry_count=r.retry_count,
        dlq_at=r.dlq_at,
        last_error=r.last_error,
    )


def annotation_record(r: WorkflowAnnotation) -> AnnotationRecord:
    return AnnotationRecord(
        id=r.id,
        run_id=r.run_id,
        key=r.key,
        value=r.value,
        scope=r.scope,
        scope_id=r.scope_id,
        stage_pk=r.stage_id,
        attempt=r.attempt,
        actor_kind=r.actor_kind,
        actor_id=r.actor_id,
        actor_version=r.actor_version,
        payload=r.payload,
        idempotency_key=r.idempotency_key,
        created_at=r.created_at,
    )


def result_run_id(result: Any) -> str | None:
    """The run a command's cached result names, kept in a column of its own so that deleting a run deletes its
    idempotency keys through an index."""
    run_id = result.get("run_id") if isinstance(result, dict) else None
    return run_id if isinstance(run_id, str) else None


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_dumps(value: Any) -> str:
    """Compact JSON of row values (datetimes as ISO text, decimals as text): ``statements.json_insert``."""
    return json.dumps(value, default=_json_default, separators=(",", ":"))
