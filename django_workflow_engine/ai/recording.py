"""Writing one ``AICall`` row per provider call (or tool execution), with the run's live totals."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from ..adapters.asyncsafe import off_the_loop
from .journal import AlreadyRecorded
from .prompts import apply_prompt_policy
from .results import ZERO, Usage


@dataclass(frozen=True)
class CallRecord:
    """One call as its ``AICall`` row keeps it.

    ``workflow_id`` and ``stage_key`` (the run's workflow and the stage's definition id) are read from the run
    and stage rows when left ``None``; ``call_key`` and ``replay`` are the journal's (see ``journal.py``).
    """

    topic: str
    call_type: str
    model_key: str
    model_id: str
    prompt: str | None
    response: str | None
    usage: Usage
    cost: Decimal | None
    latency_ms: int | None = None
    error: str | None = None
    metadata: dict[str, Any] | None = None
    run_id: str | None = None
    stage_pk: str | None = None
    workflow_id: str | None = None
    stage_key: str | None = None
    is_batch: bool = False
    call_key: str | None = None
    replay: Any = None
    cached: bool = False  # answered from the response cache: cost 0, ``saved_cost`` what it would have cost
    saved_cost: Decimal | None = None
    sent_at: datetime | None = None  # the row's created_at when set (a rate-limited call: when it was granted)


def run_sync(fn: Callable[[], Any]) -> Any:
    """Run ORM work or a provider call; inside a running event loop (an ``async def`` stage) it runs on a
    helper thread, since Django refuses synchronous queries there and litellm, seeing a running loop, would
    leave its async logging tasks on a loop that is about to close."""
    return off_the_loop(fn)


def write_call(record: CallRecord) -> Any:
    """Write one ``AICall`` row and add its cost and tokens to the run's totals, in one transaction.

    Raises:
        AlreadyRecorded: a row with this ``call_key`` exists for the stage (another execution of the stage
            recorded the logical call first); nothing was written.
    """
    from django.db import IntegrityError, transaction
    from django.db.models import F
    from django.utils import timezone

    from ..models import AICall, WorkflowRun, WorkflowStage

    run_id, stage_pk, usage, cost, call_key = record.run_id, record.stage_pk, record.usage, record.cost, record.call_key

    def write() -> Any:
        workflow = record.workflow_id
        if workflow is None and run_id:
            workflow = WorkflowRun.objects.filter(pk=run_id).values_list("workflow_id", flat=True).first()
        stage_id = record.stage_key
        if stage_id is None and stage_pk:
            stage_id = WorkflowStage.objects.filter(pk=stage_pk).values_list("stage_id", flat=True).first()
        row = AICall(
            created_at=record.sent_at or timezone.now(),
            topic=record.topic[:300],
            call_type=record.call_type,
            model_key=record.model_key[:200],
            model_id=record.model_id[:200],
            prompt=apply_prompt_policy(record.prompt),
            response=apply_prompt_policy(record.response),
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_tokens=usage.cached_tokens,
            cost=cost,
            latency_ms=record.latency_ms,
            error=record.error,
            is_batch=record.is_batch,
            metadata=record.metadata or None,
            run_id=run_id,
            stage_id=stage_pk,
            workflow_id=workflow,
            stage_key=stage_id,
            call_key=call_key,
            replay=record.replay,
            cached=record.cached,
            saved_cost=record.saved_cost,
        )
        try:
            with transaction.atomic():
                row.save()
                if run_id and (cost or usage.total_tokens):
                    WorkflowRun.objects.filter(pk=run_id).update(
                        total_cost=F("total_cost") + (cost or ZERO),
                        total_tokens=F("total_tokens") + usage.total_tokens,
                    )
        except IntegrityError:
            winner = AICall.objects.filter(stage_id=stage_pk, call_key=call_key).first() if call_key else None
            if winner is None:
                raise
            raise AlreadyRecorded(winner) from None
        return row

    return run_sync(write)


def record_call(**fields: Any) -> Any:
    """Write one ``AICall`` row from the fields of a :class:`CallRecord` (see :func:`write_call`)."""
    return write_call(CallRecord(**fields))


def fmt(value: Decimal) -> str:
    from .costs import display

    return display(value)


def elapsed_ms(started: float) -> int:
    """Milliseconds since ``started`` (a ``time.monotonic()`` reading)."""
    return int((time.monotonic() - started) * 1000)
