"""Kernel commands (what to do) and their results (what happened).

Each command is a frozen dataclass with a ``type`` string in the reference's dotted scheme (``run.create``).
Results hold only JSON-friendly values so they can be cached for idempotent replay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from .records import RunRecord


@dataclass(frozen=True)
class Command:
    type: ClassVar[str] = ""
    idempotent: ClassVar[bool] = False


@dataclass(frozen=True)
class CreateRun(Command):
    """Create a run after validating input and config: PENDING for a later claim, or started at once."""

    type: ClassVar[str] = "run.create"
    idempotent: ClassVar[bool] = True
    workflow_id: str
    input: Any
    config: Any = None
    priority: int = 5
    idempotency_key: str | None = None
    metadata: dict[str, Any] | None = None
    max_cost: Any = None
    run_id: str | None = None
    annotations: tuple[dict[str, Any], ...] = ()
    start: bool = False  # create it RUNNING with its first group enqueued (no claim round trip)
    # An aware datetime, or seconds (a number or timedelta) from now; None: the workflow's timeout, if any.
    deadline: Any = None
    # Set by ``ctx.start_child``: the starting run and stage record, and the child's key under that stage.
    parent_run_id: str | None = None
    parent_stage_id: str | None = None
    child_key: str | None = None
    start_at: datetime | None = None  # aware; a delayed start: the first group's jobs are due then
    delay: Any = None  # seconds or a timedelta from the clock's now (instead of start_at)


@dataclass(frozen=True)
class CreateRuns(Command):
    """Create and start one run per input of ``inputs``: every input is validated first (nothing is written if
    one fails), then runs are written ``batch_size`` at a time, one transaction (and one doorbell ring) per
    batch. ``idempotency_keys``: one per input (or ``None`` for an item without); an item whose key was used
    before returns that run instead of a new one."""

    type: ClassVar[str] = "run.createMany"
    workflow_id: str
    inputs: tuple[Any, ...]
    config: Any = None
    priority: int = 5
    idempotency_keys: tuple[str | None, ...] | None = None
    batch_size: int = 500


@dataclass(frozen=True)
class ClaimPendingRuns(Command):
    """Move up to ``max_claims`` PENDING runs to RUNNING and enqueue their first group."""

    type: ClassVar[str] = "run.claimPending"
    worker_id: str
    max_claims: int = 10


@dataclass(frozen=True)
class TransitionRun(Command):
    """Advance a run: start the next group, complete the run, or fail it."""

    type: ClassVar[str] = "run.transition"
    run_id: str


@dataclass(frozen=True)
class CancelRun(Command):
    type: ClassVar[str] = "run.cancel"
    run_id: str
    reason: str | None = None


@dataclass(frozen=True)
class RerunFrom(Command):
    """Run the stages from ``stage_id``'s group on again, keeping earlier outputs; the replaced stage records
    stay as history (superseded, attributed to ``actor`` when given)."""

    type: ClassVar[str] = "run.rerunFrom"
    idempotent: ClassVar[bool] = True
    run_id: str
    stage_id: str
    idempotency_key: str | None = None
    actor: str | None = None


@dataclass(frozen=True)
class SignalRun(Command):
    """Deliver signal ``name`` to a run: completes the stage waiting for it at once, or is kept until the stage
    waits. A second signal with the same ``idempotency_key`` returns the first one's result."""

    type: ClassVar[str] = "run.signal"
    run_id: str
    name: str
    payload: Any = None
    idempotency_key: str | None = None
    actor: str | None = None


@dataclass(frozen=True)
class ExecuteJob(Command):
    """Execute one stage of one run (three short transactions; none is open while stage code runs)."""

    type: ClassVar[str] = "job.execute"
    idempotent: ClassVar[bool] = True
    run_id: str
    workflow_id: str
    stage_id: str
    idempotency_key: str | None = None


@dataclass(frozen=True)
class PollSuspended(Command):
    type: ClassVar[str] = "stage.pollSuspended"
    max_checks: int = 50


@dataclass(frozen=True)
class ReapStaleLeases(Command):
    type: ClassVar[str] = "lease.reapStale"
    stale_after_seconds: float = 300


@dataclass(frozen=True)
class ReapStuckRuns(Command):
    type: ClassVar[str] = "run.reapStuck"
    stuck_after_seconds: float = 900


@dataclass(frozen=True)
class ExpireDeadlines(Command):
    """Fail unfinished runs whose deadline has passed, up to ``max_runs`` of them."""

    type: ClassVar[str] = "run.expireDeadlines"
    max_runs: int = 100


@dataclass(frozen=True)
class FlushOutbox(Command):
    type: ClassVar[str] = "outbox.flush"
    max_events: int = 100


@dataclass(frozen=True)
class ExpireIdempotencyKeys(Command):
    """Delete idempotency keys taken more than ``older_than_seconds`` ago, at most ``max_keys`` of them."""

    type: ClassVar[str] = "idempotency.expire"
    older_than_seconds: float = 7 * 24 * 3600
    max_keys: int = 1000


@dataclass(frozen=True)
class ReplayDeadLetters(Command):
    type: ClassVar[str] = "plugin.replayDLQ"
    max_events: int = 100
    # Only these dead-lettered events (by OutboxEvent id); None: the oldest ``max_events`` of them.
    event_ids: tuple[int, ...] | None = None


# -- results -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateRunResult:
    """``run``: the run's record as written (so a caller needs no read-back); ``None`` in an idempotent replay,
    whose cached result keeps only the JSON fields."""

    run_id: str
    status: str
    run: RunRecord | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class CreateRunsResult:
    """``run_ids`` in input order; ``runs``: the records as written (``None`` for an item replayed from its
    idempotency key)."""

    run_ids: list[str]
    runs: list[RunRecord | None] = field(default_factory=list, compare=False, repr=False)


@dataclass(frozen=True)
class ClaimedRun:
    run_id: str
    workflow_id: str
    job_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ClaimResult:
    claimed: list[ClaimedRun] = field(default_factory=list)


@dataclass(frozen=True)
class TransitionResult:
    action: Literal["advanced", "completed", "failed", "noop"]
    next_group: int | None = None
    job_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CancelResult:
    cancelled: bool


@dataclass(frozen=True)
class RerunResult:
    """``run``: the run's record as the rerun left it (``None`` in an idempotent replay)."""

    run_id: str
    stage_id: str
    deleted_stages: list[str] = field(default_factory=list)  # the stage ids run again (their old records are kept)
    job_ids: list[str] = field(default_factory=list)
    run: RunRecord | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class SignalResult:
    """``delivered``: the waiting stage completed with this signal (else it is kept for the stage);
    ``replayed``: an earlier signal with the same idempotency key."""

    signal_id: int
    run_id: str
    name: str
    stage_id: str
    delivered: bool
    replayed: bool = False


@dataclass(frozen=True)
class ExecuteResult:
    outcome: Literal["completed", "suspended", "failed", "deferred"]  # deferred: only for a job (never here)
    output: Any = None
    error: str | None = None
    next_poll_at: str | None = None  # ISO 8601: results are cached as JSON for idempotent replay
    ghost: bool = False
    retryable: bool = True


@dataclass(frozen=True)
class PollResult:
    checked: int = 0
    resumed: int = 0
    failed: int = 0
    resumed_run_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReapStaleResult:
    released: int = 0


@dataclass(frozen=True)
class ExpireDeadlinesResult:
    failed: int = 0


@dataclass(frozen=True)
class ReapStuckResult:
    failed: int = 0
    requeued: int = 0


@dataclass(frozen=True)
class FlushResult:
    published: int = 0
    failed: int = 0
    dead_lettered: int = 0


@dataclass(frozen=True)
class ReplayResult:
    replayed: int = 0


@dataclass(frozen=True)
class ExpireResult:
    expired: int = 0
