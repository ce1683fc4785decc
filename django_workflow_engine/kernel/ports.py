"""The ports the kernel talks through. Adapters implement them; the kernel imports nothing else.

Two families implement every port: the in-memory adapters in :mod:`django_workflow_engine.kernel.memory`
(the reference semantics, used by plain unit tests) and the ORM adapters in
:mod:`django_workflow_engine.adapters`. One conformance suite (``tests/conformance``) runs against both.

Conventions shared by all implementations:

* Timestamps are timezone-aware UTC ``datetime`` objects supplied by the caller (the kernel's clock), so a
  fake clock drives every time-dependent query deterministically.
* Every ``update_*`` bumps ``version`` by one, with or without ``expected_version``; with it, a mismatch raises
  :class:`~django_workflow_engine.core.errors.StaleVersionError` and writes nothing.
* ``atomic()`` is a transaction. Job-queue writes made inside it commit or roll back with it (the job queue
  lives in the same store). Nested ``atomic()`` blocks are savepoints.
* Records returned are copies: mutating them changes nothing until passed to an ``update_*`` method.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from .records import (
    AnnotationRecord,
    IdempotencyClaim,
    JobRecord,
    LogRecord,
    NewJob,
    OutboxRecord,
    RunBatch,
    RunRecord,
    SignalRecord,
    StageRecord,
)


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""
        ...


@runtime_checkable
class Persistence(Protocol):
    # -- transactions ---------------------------------------------------------------------------------------
    def atomic(self) -> AbstractContextManager[None]:
        """A transaction (savepoint when nested). An exception inside rolls back every write made inside.

        The adapter may hold writes back and send them together, before the next read and before the block
        ends (errors such as a missing row then surface there, still inside the block); ``update_run`` and
        ``update_stage`` without ``expected_version`` may then return 0 for the version."""
        ...

    def batch(self, run_ids: Sequence[str], stages: bool = False) -> AbstractContextManager[RunBatch]:
        """One transaction for steps of several runs (a worker's lockstep batch): the runs are locked up front
        (in id order) and, with ``stages``, their current stages read; the result holds them by run id. Inside,
        ``atomic()`` blocks join this transaction, and each run's first :meth:`lock_run` and :meth:`get_stages`
        may be answered from what was read up front (so only the run's own steps may write its rows before
        them). An exception leaving an inner block sets ``broken`` where inner blocks cannot roll back alone (the
        ORM's join the shared transaction without a savepoint): the caller must then let an exception leave the
        batch, which rolls every step back. Not nested."""
        ...

    # -- runs -----------------------------------------------------------------------------------------------
    def create_run(self, run: RunRecord, now: datetime) -> RunRecord:
        """Insert ``run`` (its ``id`` is set by the caller); sets created_at/updated_at = now, version 1."""
        ...

    def create_runs(self, runs: Sequence[RunRecord], now: datetime) -> list[RunRecord]:
        """:meth:`create_run` for many runs at once (in order): all are inserted, or, when one id exists
        already, none (``WorkflowEngineError``, here or when the transaction's deferred writes leave)."""
        ...

    def get_run(self, run_id: str) -> RunRecord | None: ...

    # -- run concurrency limits (kernel/concurrency.py) --
    def lock_stage_limit(self, workflow_id: str, stage_id: str) -> None:
        """Inside a transaction: serialize admissions to one stage's cluster-wide limit until commit."""
        ...

    def running_stage_count(self, workflow_id: str, stage_id: str, exclude_id: str) -> int:
        """Current RUNNING stage records of ``stage_id`` in runs of ``workflow_id``, other than ``exclude_id``."""
        ...

    def lock_concurrency_key(self, workflow_id: str, key: str) -> None:
        """Serialize admissions of one (workflow, key) until the transaction ends."""

    def concurrency_counts(self, workflow_id: str, key: str, now: datetime | None = None) -> tuple[int, int]:
        """(RUNNING, PENDING) runs of ``workflow_id`` with concurrency key ``key``; with ``now``, a delayed run
        not due yet (``scheduled_at`` after ``now``) is not counted as waiting."""
        ...

    def waiting_runs(self, workflow_id: str, key: str, limit: int, now: datetime | None = None) -> list[RunRecord]:
        """PENDING runs with ``key``, highest priority first, then oldest (with ``now``: those due by then)."""
        ...

    def waiting_concurrency_keys(self, limit: int, now: datetime | None = None) -> list[tuple[str, str]]:
        """(workflow_id, key) pairs that have runs waiting for a slot (with ``now``: runs due by then)."""
        ...

    def get_run_status(self, run_id: str) -> str | None:
        """The run's status (``None``: no such run); callable from a thread that runs an event loop (an
        ``async def`` stage)."""
        ...

    def get_child_runs(
        self, *, parent_stage_id: str | None = None, parent_run_id: str | None = None
    ) -> list[RunRecord]:
        """Runs started by one stage record, or by any stage of one run, oldest first."""
        ...

    def wake_suspended_stage(self, stage_pk: str, now: datetime) -> bool:
        """A SUSPENDED stage record's next poll moved to ``now`` (its child finished); False if not suspended."""
        ...

    def lock_run(self, run_id: str, known: RunRecord | None = None) -> RunRecord | None:
        """Read the run and lock its row until the surrounding transaction ends (``SELECT ... FOR UPDATE`` on
        PostgreSQL). Must be called inside ``atomic()``. ``None`` if missing. ``known``: the run as the caller
        read it in an earlier transaction; an adapter may then read again only what can have changed without
        its version moving (status, version, AI totals) when the version has not moved, and the result is the
        same as a whole read."""
        ...

    def share_run(self, run_id: str) -> RunRecord | None:
        """Read the run and keep :meth:`lock_run` from taking its row until the surrounding transaction ends
        (``SELECT ... FOR KEY SHARE`` on PostgreSQL; elsewhere the write lock serializes): any number of
        transactions share the run at once (a map's items) and none waits for another, while a command that
        locks the run (cancel, rerun, transition) waits for them, and they for it. ``None`` if missing."""
        ...

    def update_run(
        self, run_id: str, fields: Mapping[str, Any], now: datetime, expected_version: int | None = None
    ) -> int:
        """Write ``fields`` (attribute names of :class:`RunRecord`), set updated_at = now, bump version.

        Returns the new version. Raises ``RunNotFound`` if missing, ``StaleVersionError`` on a version mismatch.
        """
        ...

    def claim_next_pending_run(self, now: datetime) -> RunRecord | None:
        """Atomically move the highest-priority, oldest PENDING run to RUNNING (started_at = now, version + 1)
        and return it as it is after the claim; ``None`` when there is none. Safe under concurrent callers:
        a run is claimed once (``FOR UPDATE SKIP LOCKED`` on PostgreSQL)."""
        ...

    def get_stuck_runs(self, cutoff: datetime, limit: int = 100) -> list[RunRecord]:
        """RUNNING runs whose updated_at and every stage's updated_at are <= cutoff, that have no SUSPENDED
        stage still waiting (``next_poll_at`` or ``max_wait_until`` after the cutoff counts as activity) and
        no PENDING or RUNNING job (a queued job is waiting for a worker; a running one is leased and
        heartbeating, or will be released by the lease reaper); oldest updated_at first."""
        ...

    def get_runs_past_deadline(self, now: datetime, limit: int = 100) -> list[RunRecord]:
        """Unfinished runs (PENDING, RUNNING, SUSPENDED) whose ``deadline_at`` is <= now, earliest first."""
        ...

    def add_run_totals(self, run_id: str, cost: Decimal, tokens: int) -> None:
        """Atomically add to total_cost/total_tokens (no version bump: these are counters)."""
        ...

    # -- stages ---------------------------------------------------------------------------------------------
    def get_stages(self, run_id: str) -> list[StageRecord]:
        """The run's current stage records (superseded ones excluded) by (execution_group, stage_number)."""
        ...

    def get_stage(self, run_id: str, stage_id: str) -> StageRecord | None:
        """The current (not superseded) record of one stage of the run."""
        ...

    def get_stages_named(self, run_id: str, stage_ids: Sequence[str]) -> list[StageRecord]:
        """The current records of the named stages of the run (those that exist), in one read: a map's item
        and its map."""
        ...

    def get_stage_history(self, run_id: str) -> list[StageRecord]:
        """Every stage record of the run, superseded ones included, by (attempt, execution_group, stage_number)."""
        ...

    def create_stages(self, stages: Sequence[StageRecord], now: datetime) -> list[StageRecord]:
        """Insert stage records (ids set by caller) unless a current record for (run_id, stage_id) exists;
        returns the records as stored (existing ones untouched), in input order."""
        ...

    def insert_stages(self, stages: Sequence[StageRecord], now: datetime) -> list[StageRecord]:
        """Insert stage records the caller knows are new (it made the run, or holds the run lock and read its
        stages): no existing record is looked for, and one that exists is an error. Returns them as stored."""
        ...

    def update_stage(
        self, stage_pk: str, fields: Mapping[str, Any], now: datetime, expected_version: int | None = None
    ) -> int:
        """Like :meth:`update_run` for a current stage record (by primary key); a superseded record is
        history and raises ``WorkflowEngineError`` (as a missing one does)."""
        ...

    def update_open_stage(
        self,
        run_id: str,
        stage_id: str,
        fields: Mapping[str, Any],
        now: datetime,
        statuses: Sequence[str],
        stage_pk: str | None = None,
    ) -> StageRecord | None:
        """Write ``fields`` on the current record of ``stage_id`` of the run (with ``stage_pk``: only if that is
        this record) only if its status is one of ``statuses``, bumping version and updated_at; one atomic
        statement. Returns the record as written, or ``None`` (nothing written): a map's item that a cancel,
        its failed map, a rerun or another delivery got to first."""
        ...

    def count_map_items(
        self, run_id: str, stage_id: str, done: int, failed: Sequence[int], now: datetime
    ) -> StageRecord | None:
        """Count settled items on the current RUNNING record of map ``stage_id``, in one atomic statement (no
        run lock): ``done`` added to its metrics' ``map_done``, the item indexes ``failed`` added to
        ``map_failed`` (sorted, each once), and ``map_queued`` raised by as many (at most ``map_items``).
        Concurrent callers are serialized on that one record, each sees its own count. Returns the record as
        written, or ``None`` if the map is not current and RUNNING (nothing written)."""
        ...

    def supersede_stages_from_group(
        self, run_id: str, group: int, now: datetime, actor: str | None = None
    ) -> list[StageRecord]:
        """Turn the run's current stage records with execution_group >= group into history: superseded_at = now,
        superseded_by = actor, version + 1, and a record still PENDING/RUNNING/SUSPENDED becomes CANCELLED
        (completed_at = now, next_poll_at = None). Their logs, AI calls, annotations and outputs stay linked to
        them. Returns them as they were before, by (execution_group, stage_number)."""
        ...

    def cancel_open_stages(self, run_id: str, now: datetime) -> int:
        """Set every current stage of the run not COMPLETED/FAILED/CANCELLED to CANCELLED (completed_at = now,
        next_poll_at = None, version + 1). Returns how many."""
        ...

    def get_due_suspended_stages(self, now: datetime, limit: int) -> list[StageRecord]:
        """Current SUSPENDED stages with next_poll_at <= now, oldest next_poll_at first."""
        ...

    # -- logs -----------------------------------------------------------------------------------------------
    def create_log(
        self,
        run_id: str | None,
        stage_pk: str | None,
        level: str,
        message: str,
        metadata: Mapping[str, Any] | None,
        now: datetime,
    ) -> None: ...

    def get_logs(self, run_id: str) -> list[LogRecord]:
        """Logs of a run in insertion order."""
        ...

    # -- outbox ---------------------------------------------------------------------------------------------
    def append_events(self, events: Sequence[Mapping[str, Any]], causation_id: str) -> None:
        """Append events (dicts with ``type``, ``timestamp`` (ISO string) and ``workflow_run_id``) to the
        outbox, assigning each run's next gapless sequence numbers (from 1) in list order. Safe under
        concurrent writers for one run."""
        ...

    def get_unpublished_events(self, limit: int) -> list[OutboxRecord]:
        """Unpublished, non-dead-lettered events ordered by (run_id, sequence)."""
        ...

    def get_events(self, run_id: str) -> list[OutboxRecord]:
        """All events of a run by sequence."""
        ...

    def mark_events_published(self, ids: Iterable[int], now: datetime) -> None: ...

    def record_event_failure(self, event_id: int, max_retries: int, now: datetime, error: str | None = None) -> bool:
        """Increment retry_count and keep ``error`` as last_error; when retry_count reaches ``max_retries`` set
        dlq_at = now. Returns True if dead-lettered."""
        ...

    def replay_dead_letters(self, limit: int, event_ids: Iterable[int] | None = None) -> int:
        """Reset up to ``limit`` dead-lettered events (dlq_at = None, retry_count = 0), only those of
        ``event_ids`` when given. Returns how many."""
        ...

    # -- idempotency ----------------------------------------------------------------------------------------
    def acquire_idempotency_key(
        self, key: str, command_type: str, now: datetime, stale_after_seconds: float | None
    ) -> IdempotencyClaim:
        """Insert an in-progress marker for (key, command_type).

        Returns ``acquired`` (new or reclaimed stale marker; only one concurrent caller wins a reclaim),
        ``replay`` with the stored result for a completed key, or ``in_progress``. A marker older than
        ``stale_after_seconds`` (None: never) is stale.
        """
        ...

    def complete_idempotency_key(self, key: str, command_type: str, result: Any) -> None: ...

    def release_idempotency_key(self, key: str, command_type: str) -> None: ...

    def discard_idempotency_key(self, key: str, command_type: str, run_id: str) -> bool:
        """Delete the completed key if its stored result still names ``run_id`` (a run that no longer exists);
        a key completed again since by someone else is kept. Returns whether a row was deleted."""
        ...

    def expire_idempotency_keys(self, cutoff: datetime, limit: int) -> int:
        """Delete up to ``limit`` keys taken before ``cutoff``, oldest first. Returns how many."""
        ...

    # -- annotations ----------------------------------------------------------------------------------------
    def append_annotations(self, annotations: Sequence[AnnotationRecord], now: datetime) -> list[AnnotationRecord]:
        """Insert annotations, skipping any whose (run_id, key, idempotency_key) exists when idempotency_key
        is not None. Returns the rows written."""
        ...

    def list_annotations(self, run_id: str, filters: Mapping[str, Any]) -> list[AnnotationRecord]:
        """Annotations of a run ordered by (created_at, id); filters: key, key_prefix, scope, scope_id,
        actor_id, actor_kind, attempt, since, until (inclusive), limit (default 1000)."""
        ...

    # -- signals ------------------------------------------------------------------------------------------------
    def create_signal(self, signal: SignalRecord, now: datetime) -> SignalRecord:
        """Store a signal (``received_at`` = now); returns it with its id."""
        ...

    def get_signal_by_key(self, run_id: str, idempotency_key: str) -> SignalRecord | None:
        """The run's signal delivered with this idempotency key, if any."""
        ...

    def next_signal(self, run_id: str, name: str) -> SignalRecord | None:
        """The run's oldest signal ``name`` not consumed yet."""
        ...

    def consume_signal(self, signal_id: int, stage_pk: str, now: datetime) -> None:
        """Mark the signal consumed by that stage record (the caller holds the run lock)."""
        ...

    def get_signals(self, run_id: str) -> list[SignalRecord]:
        """The run's signals, oldest first."""
        ...


@runtime_checkable
class JobQueue(Protocol):
    def enqueue(self, jobs: Sequence[NewJob], now: datetime) -> list[str]:
        """Insert PENDING jobs (attempt 0; available_at defaults to now). Returns their ids in order.

        A job with ``claimed_by`` is inserted already taken by that worker, as :meth:`claim` would leave it
        (RUNNING, attempt 1, locked_at = started_at = now), and is not announced to other workers."""
        ...

    def dequeue(self, worker_id: str, now: datetime) -> JobRecord | None:
        """Claim the next due PENDING job (highest priority, then oldest created_at, available_at <= now):
        status RUNNING, attempt + 1, worker_id, locked_at = started_at = now. Never returns one job to two
        callers. Database errors propagate; ``None`` only means the queue has nothing due."""
        ...

    def dequeue_many(self, worker_id: str, now: datetime, limit: int) -> list[JobRecord]:
        """Claim up to ``limit`` due PENDING jobs as :meth:`dequeue` would, in one statement where the database
        allows; in :meth:`dequeue`'s order. ``ValueError`` for a limit below 1."""
        ...

    def claim(self, job_id: str, worker_id: str, now: datetime) -> JobRecord | None:
        """Claim one specific job like :meth:`dequeue` would, if it is PENDING and due; else ``None``."""
        ...

    def claim_stage(self, run_id: str, stage_id: str, worker_id: str, now: datetime) -> JobRecord | None:
        """Claim the due PENDING job of one stage of a run like :meth:`claim` (the oldest, if there are
        several), or ``None``; never waits for a job another claimer holds. A worker that finishes a parallel
        stage takes a sibling that no other worker has picked up, and its queue message becomes useless: the
        adapter withdraws it after commit where it can."""
        ...

    def claim_item(self, run_id: str, map_stage_id: str, worker_id: str, now: datetime) -> JobRecord | None:
        """Claim, like :meth:`claim_stage`, the oldest due PENDING job of an item of map ``map_stage_id`` of the
        run (stage id ``map_stage_id[<index>]``), skipping jobs other claimers hold (never waits): the worker
        that finished an item goes on with another. Its queue message is withdrawn after commit where it can."""
        ...

    def get_job(self, job_id: str) -> JobRecord | None: ...

    def complete(self, job_id: str, now: datetime) -> None:
        """RUNNING (or SUSPENDED) -> COMPLETED, completed_at = now, lease cleared. A CANCELLED job stays CANCELLED."""
        ...

    def suspend(self, job_id: str, next_poll_at: datetime, now: datetime) -> None:
        """RUNNING -> SUSPENDED; available_at = next_poll_at; lease cleared."""
        ...

    def fail(self, job_id: str, error: str, retry_at: datetime | None, now: datetime) -> None:
        """With ``retry_at``: RUNNING -> PENDING, available_at = retry_at, last_error, lease cleared.
        Without: -> FAILED, completed_at = now, last_error. A CANCELLED job stays CANCELLED."""
        ...

    def defer(self, job_id: str, until: datetime, reason: str, now: datetime) -> None:
        """RUNNING -> PENDING due at ``until``, lease cleared, attempt decremented (a deferral is not an
        attempt), ``wait_reason`` = reason. A job that is no longer RUNNING is left alone."""
        ...

    def release(self, job_id: str, worker_id: str, now: datetime) -> bool:
        """Give back a RUNNING job held by ``worker_id`` that it has not started executing: PENDING, due now,
        lease cleared, attempt decremented (the attempt was never made). False if it is no longer held."""
        ...

    def touch(self, job_id: str, worker_id: str, now: datetime) -> bool:
        """Heartbeat: refresh locked_at of a RUNNING job held by ``worker_id``. False if the lease is gone."""
        ...

    def release_stale(self, cutoff: datetime, now: datetime) -> list[JobRecord]:
        """RUNNING jobs with locked_at < cutoff -> PENDING (lease cleared, attempt kept, available_at = now).
        Returns the released jobs."""
        ...

    def cancel_by_run(self, run_id: str, now: datetime, include_running: bool = False) -> int:
        """PENDING and SUSPENDED jobs of the run -> CANCELLED. RUNNING jobs are left to finish as ghosts,
        unless ``include_running`` (a rerun retires the previous generation's jobs, live or not)."""
        ...

    def complete_suspended(self, run_id: str, stage_id: str, now: datetime) -> None:
        """Mark the SUSPENDED job of a resumed stage COMPLETED."""
        ...

    def wake_suspended(self, run_id: str, stage_id: str, now: datetime) -> bool:
        """The SUSPENDED job of a stage -> PENDING, due now, attempt decremented (a poll is not an attempt), and
        announced to workers after commit: its stage is polled at once (a signal woke it). False if none."""
        ...

    def jobs_for_run(self, run_id: str) -> list[JobRecord]: ...

    def due_pending(self, now: datetime, older_than: datetime, limit: int) -> list[JobRecord]:
        """PENDING jobs due at ``now`` whose last update is <= older_than (doorbell redelivery candidates)."""
        ...


@runtime_checkable
class BlobStore(Protocol):
    """JSON blobs by key (stage outputs, artifacts, ``ctx.storage``)."""

    def put(self, key: str, data: Any) -> None: ...

    def get(self, key: str) -> Any:
        """Raises ``BlobNotFound`` when missing."""
        ...

    def has(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """No error when missing."""
        ...

    def list(self, prefix: str) -> list[str]: ...


@runtime_checkable
class EventSink(Protocol):
    def emit(self, event: Mapping[str, Any]) -> None:
        """Deliver one event; raising means "not delivered" (it will be retried)."""
        ...


class WorkflowRegistry(Protocol):
    def get(self, workflow_id: str) -> Any:
        """The :class:`~django_workflow_engine.core.workflow.Workflow` or ``None``."""
        ...

    def ids(self) -> list[str]: ...
