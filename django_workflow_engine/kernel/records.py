"""Plain records the kernel reads and writes through its ports.

Adapters convert their storage (ORM rows, dicts) to these; the kernel never sees a Django model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """Status of runs, stages and jobs (one vocabulary, as in the reference)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUSPENDED = "SUSPENDED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"


# The groups of statuses the engine reasons about; everything else (the models' TextChoices, the admin) is built
# from ``Status`` and these.
TERMINAL_STATUSES = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})
"""A run (or stage) in one of these is finished: nothing more happens to it unless it is rerun."""
ACTIVE_STATUSES = frozenset({Status.PENDING, Status.RUNNING, Status.SUSPENDED})
"""A stage (or run) in one of these still has work ahead of it."""
RERUNNABLE_STATUSES = frozenset({Status.COMPLETED, Status.FAILED})
"""A run in one of these may be rerun from a stage (a cancelled run may not)."""
LIVE_JOB_STATUSES = frozenset({Status.PENDING, Status.RUNNING})
"""A job in one of these is still to be (or being) executed."""

TERMINAL_RUN_STATUSES = TERMINAL_STATUSES
ACTIVE_STAGE_STATUSES = ACTIVE_STATUSES


@dataclass
class RunRecord:
    id: str
    workflow_id: str
    workflow_name: str
    workflow_type: str
    input: Any
    config: dict[str, Any] = field(default_factory=dict)
    status: str = Status.PENDING
    priority: int = 5
    version: int = 1
    output: Any = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_ms: int | None = None
    total_cost: Decimal = Decimal(0)
    total_tokens: int = 0
    max_cost: Decimal | None = None
    metadata: dict[str, Any] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    concurrency_key: str | None = None  # set on runs of a limited workflow; PENDING with a key = waiting for a slot
    deadline_at: datetime | None = None  # not finished by then: failed with "deadline exceeded"
    # A child run: the run and stage record that started it, and the key it was started under.
    parent_run_id: str | None = None
    parent_stage_id: str | None = None
    child_key: str | None = None
    scheduled_at: datetime | None = None  # a delayed start: its first group is not due before this time

    def elapsed_ms(self, now: datetime) -> int:
        """Wall time from the run's first start (its creation if it never started) to ``now``."""
        since = self.started_at or self.created_at or now
        return int((now - since).total_seconds() * 1000)


@dataclass
class StageRecord:
    id: str
    run_id: str
    stage_id: str
    stage_name: str
    stage_number: int
    execution_group: int
    status: str = Status.PENDING
    attempt: int = 0
    version: int = 1
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_ms: int | None = None
    output_data: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    suspended_state: dict[str, Any] | None = None
    next_poll_at: datetime | None = None
    poll_interval_ms: int | None = None
    max_wait_until: datetime | None = None
    metrics: dict[str, Any] | None = None
    error_message: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # Set when a rerun replaced this record with a new generation's: it is then history, read-only, and no
    # longer one of "the stages of the run" (``superseded_by``: who asked for the rerun, when known).
    superseded_at: datetime | None = None
    superseded_by: str | None = None
    # An item of a map stage (``stage_id`` is ``"map_stage[index]"``): its index and its input.
    item_index: int | None = None
    item: Any = None


@dataclass
class NewJob:
    """A job to enqueue: "execute stage ``stage_id`` of run ``run_id``"."""

    run_id: str
    workflow_id: str
    stage_id: str
    priority: int = 5
    max_attempts: int = 3
    payload: dict[str, Any] = field(default_factory=dict)
    available_at: datetime | None = None
    # Inserted already RUNNING (attempt 1, leased to this worker id) and not announced to any other worker:
    # the worker that finished the previous group executes it next (eager continuation).
    claimed_by: str | None = None


@dataclass
class JobRecord:
    id: str
    run_id: str
    workflow_id: str
    stage_id: str
    status: str = Status.PENDING
    priority: int = 5
    attempt: int = 0
    max_attempts: int = 3
    worker_id: str | None = None
    locked_at: datetime | None = None
    available_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    last_error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    wait_reason: str | None = None  # why a deferred job is due later ("rate limit gpt-4o-mini until 12:03:10")


@dataclass
class OutboxRecord:
    id: int
    run_id: str
    sequence: int
    event_type: str
    payload: dict[str, Any]
    causation_id: str
    occurred_at: datetime
    published_at: datetime | None = None
    retry_count: int = 0
    dlq_at: datetime | None = None
    last_error: str | None = None


@dataclass
class LogRecord:
    id: int
    run_id: str | None
    stage_pk: str | None
    level: str
    message: str
    metadata: dict[str, Any] | None = None
    created_at: datetime | None = None


@dataclass
class AnnotationRecord:
    id: int
    run_id: str
    key: str
    value: Any
    scope: str = "run"
    scope_id: str | None = None
    stage_pk: str | None = None
    attempt: int = 0
    actor_kind: str | None = None
    actor_id: str | None = None
    actor_version: str | None = None
    payload: Any = None
    idempotency_key: str | None = None
    created_at: datetime | None = None


@dataclass
class SignalRecord:
    """A signal delivered to a run: kept until the stage waiting for ``name`` consumes it."""

    id: int
    run_id: str
    name: str
    payload: Any
    actor: str | None = None
    idempotency_key: str | None = None
    received_at: datetime | None = None
    consumed_by: str | None = None  # the id of the stage record it completed
    consumed_at: datetime | None = None


@dataclass(frozen=True)
class IdempotencyClaim:
    """Outcome of acquiring an idempotency key: ``acquired``, ``replay`` (with ``result``) or ``in_progress``."""

    state: str
    result: Any = None


# What an idempotency key's stored result holds while its command runs (the adapters store it, then the result).
IN_PROGRESS = {"__workflow_engine_state": "in_progress"}


@dataclass(frozen=True)
class StartedStage:
    """A stage that a transaction has already started for a worker (eager continuation): its job is RUNNING
    and leased to that worker, its stage record RUNNING, and ``stage:started`` recorded. ``run`` and ``stages``
    are what that transaction read under the run lock, so executing it needs no further reads."""

    job: JobRecord
    run: RunRecord
    stages: list[StageRecord]
    record: StageRecord


@dataclass
class RunBatch:
    """An open :meth:`~.ports.Persistence.batch`: the runs it locked at its start and, when asked, their current
    stages, each by run id, as not yet handed out to a run's first ``lock_run``/``get_stages``. ``broken``: an
    exception left one of its ``atomic()`` blocks (the whole transaction must be rolled back)."""

    runs: dict[str, RunRecord] = field(default_factory=dict)
    stages: dict[str, list[StageRecord]] = field(default_factory=dict)
    broken: bool = False
