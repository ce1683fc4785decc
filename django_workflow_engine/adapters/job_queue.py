"""ORM implementation of the kernel's :class:`~django_workflow_engine.kernel.ports.JobQueue` port.

Claims are safe under concurrency: a claim is one ``UPDATE ... WHERE id = (SELECT ... LIMIT 1) RETURNING id``
statement, whose inner SELECT uses ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (workers never wait for each other)
and which SQLite, with its single writer, runs without interleaving (see
:func:`~django_workflow_engine.adapters.store.claim_one`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

from django.db import connections, transaction
from django.db.models import F, Q
from django.db.models.functions import Greatest

from ..core.errors import WorkflowEngineError
from ..core.ids import new_id
from ..kernel.records import JobRecord, NewJob, Status
from ..models import WorkflowJob
from . import deferred, notify
from .cursors import hot_cursor
from .sqlite import guard_public_methods
from .statements import PLUS_ONE, claim, claim_by_id, json_insert, q, single_statement_claims, update
from .store import claim_one, expect_rows, returned_row, returned_rows

JOB_FIELDS = [f.name for f in fields(JobRecord)]

_last_id = 0
_id_lock = threading.Lock()


def _ordered_id() -> str:
    """A :func:`~django_workflow_engine.core.ids.new_id` that is also strictly increasing in this process.

    Jobs enqueued at the same instant (one batch, or a frozen test clock) then dequeue in insertion order,
    because ``id`` is the last FIFO tie-break after ``created_at``, as in the in-memory queue.
    """
    global _last_id
    candidate = int(new_id(), 16)
    with _id_lock:
        candidate = max(candidate, _last_id + 1)
        _last_id = candidate
    return f"{candidate:032x}"


def _due(connection: Any, now: datetime) -> tuple[str, list[Any]]:
    """The condition of a job a worker may take at ``now``: PENDING and due.

    The status is a literal, not a parameter: a prepared statement's generic plan can use the partial index
    ``dwe_job_dequeue_idx`` (``WHERE status = 'PENDING'``) only when the predicate is in the text. With a
    parameter, PostgreSQL settled on a generic plan that scanned and sorted the whole job table on every dequeue
    once the statement had run a few times (benchmarks/README.md, "what each cut bought")."""
    stamp = WorkflowJob._meta.get_field("available_at").get_db_prep_save(now, connection)
    return f"{q('status')} = '{Status.PENDING.value}' AND {q('available_at')} <= %s", [stamp]


def _taken(worker_id: str, now: datetime) -> dict[str, Any]:
    """Column values of a job inserted already claimed by ``worker_id`` (see ``NewJob.claimed_by``)."""
    return {"status": Status.RUNNING, "attempt": 1, "worker_id": worker_id, "locked_at": now, "started_at": now}


def job_record(row: WorkflowJob) -> JobRecord:
    return JobRecord(**{name: getattr(row, name) for name in JOB_FIELDS})


@guard_public_methods
class OrmJobQueue:
    """Job queue over the ``WorkflowJob`` table (on SQLite, its statements wait out a busy database: :mod:`.sqlite`).

    Args:
        using: database alias.
        on_enqueue: the doorbell. Called after the surrounding transaction commits (robustly: an exception
            is logged, not raised) with the ids of jobs that became PENDING: new jobs, jobs re-queued by
            :meth:`fail` with a retry, jobs released by :meth:`release_stale`, and suspended jobs a signal woke
            (:meth:`wake_suspended`). Jobs due now are passed
            as ``on_enqueue(ids)``; jobs due later as ``on_enqueue(ids, at=when)``, so the doorbell can ring
            when they become due (:func:`~django_workflow_engine.adapters.rq.ring` schedules the message).
        on_withdraw: called after commit (robustly) with the ids of PENDING jobs that :meth:`claim_stage` took
            without their message: the doorbell may drop those messages
            (:func:`~django_workflow_engine.adapters.rq.withdraw`); a message it does not drop is delivered
            and skipped, because its job is no longer PENDING.
        notify_due: notify idle database-transport workers (PostgreSQL's ``pg_notify``, :mod:`.notify`) inside
            the transaction that makes jobs due now; it is delivered when that transaction commits.
    """

    def __init__(
        self,
        using: str = "default",
        on_enqueue: Callable[..., object] | None = None,
        on_withdraw: Callable[[list[str]], object] | None = None,
        notify_due: bool = False,
    ):
        self.using = using
        self.on_enqueue = on_enqueue
        self.on_withdraw = on_withdraw
        self.notify_due = notify_due

    def _jobs(self):
        return WorkflowJob.objects.using(self.using)

    def _ring(self, ids: list[str], at: datetime | None = None) -> None:
        if not ids:
            return
        if self.notify_due and at is None:
            notify.notify(self.using)
        if self.on_enqueue is None:
            return
        callback = self.on_enqueue
        kwargs: dict[str, Any] = {} if at is None else {"at": at}
        transaction.on_commit(lambda: callback(ids, **kwargs), using=self.using, robust=True)

    def enqueue(self, jobs: Sequence[NewJob], now: datetime) -> list[str]:
        rows = [
            {
                "id": _ordered_id(),
                "created_at": now,
                "updated_at": now,
                "run_id": job.run_id,
                "workflow_id": job.workflow_id,
                "stage_id": job.stage_id,
                "priority": job.priority,
                "max_attempts": job.max_attempts,
                "payload": job.payload,
                "available_at": job.available_at or now,
                "status": Status.PENDING,
                **(_taken(job.claimed_by, now) if job.claimed_by is not None else {}),
            }
            for job in jobs
        ]
        if deferred.deferring(self.using):
            sql, params = json_insert(self.using, WorkflowJob, rows)
            error = WorkflowEngineError(f"Could not insert {len(rows)} job(s).")
            deferred.defer(self.using, deferred.Write(sql, params, check=expect_rows(len(rows), error)))
        else:
            self._jobs().bulk_create([WorkflowJob(**row) for row in rows])
        by_due: dict[datetime | None, list[str]] = {}
        for row in rows:
            if row["status"] != Status.PENDING:
                continue
            by_due.setdefault(row["available_at"] if row["available_at"] > now else None, []).append(row["id"])
        for at, ids in by_due.items():
            self._ring(ids, at)
        return [row["id"] for row in rows]

    def _take_values(self, worker_id: str, now: datetime) -> dict[str, Any]:
        return {
            "status": Status.RUNNING,
            "attempt": F("attempt") + 1,
            "worker_id": worker_id,
            "locked_at": now,
            "started_at": now,
            "updated_at": now,
        }

    def _single_statement(self) -> bool:
        return single_statement_claims(connections[self.using])

    def dequeue(self, worker_id: str, now: datetime) -> JobRecord | None:
        if self._single_statement():
            # One hand-written UPDATE ... RETURNING in autocommit: the inner SELECT walks the partial index of
            # PENDING jobs in (priority desc, created_at, id) order and skips rows other claimers hold.
            return self._claim_next("", [], f"{q('priority')} DESC, {q('created_at')}, {q('id')}", worker_id, now)
        with transaction.atomic(using=self.using):
            row = claim_one(
                self.using,
                self._jobs().due(now),
                Q(status=Status.PENDING, available_at__lte=now),
                **self._take_values(worker_id, now),
            )
            return job_record(row) if row is not None else None

    def dequeue_many(self, worker_id: str, now: datetime, limit: int) -> list[JobRecord]:
        if limit < 1:
            raise ValueError(f"dequeue_many needs a limit of at least 1, not {limit}")
        if limit == 1 or not self._single_statement():
            jobs: list[JobRecord] = []
            while len(jobs) < limit and (job := self.dequeue(worker_id, now)) is not None:
                jobs.append(job)
            return jobs
        connection = connections[self.using]
        due, due_params = _due(connection, now)
        order = f"{q('priority')} DESC, {q('created_at')}, {q('id')}"
        values = self._claim_values(worker_id, now)
        sql, params = claim(connection, WorkflowJob, values, due, due_params, order, due, due_params, limit)
        rows = returned_rows(self.using, WorkflowJob, sql, params)
        jobs = [JobRecord(**{name: row[name] for name in JOB_FIELDS}) for row in rows]
        return sorted(jobs, key=lambda job: (-job.priority, job.created_at, job.id))

    def claim(self, job_id: str, worker_id: str, now: datetime) -> JobRecord | None:
        if self._single_statement():
            return self._claim_by_id(job_id, worker_id, now)
        candidates = self._jobs().filter(pk=job_id, status=Status.PENDING, available_at__lte=now)
        values = self._take_values(worker_id, now)
        with transaction.atomic(using=self.using):
            taken = candidates.update(**values)
            return job_record(self._jobs().get(pk=job_id)) if taken else None

    def _claim_by_id(self, job_id: str, worker_id: str, now: datetime) -> JobRecord | None:
        """The RQ path's claim: one hand-written ``UPDATE ... RETURNING`` in autocommit (every queue-delivered
        stage starts with it)."""
        connection = connections[self.using]
        sql, params = claim_by_id(
            connection, WorkflowJob, self._claim_values(worker_id, now), job_id, *_due(connection, now)
        )
        return self._returned(sql, params)

    def claim_stage(self, run_id: str, stage_id: str, worker_id: str, now: datetime) -> JobRecord | None:
        pick = f"{q('run_id')} = %s AND {q('stage_id')} = %s AND "
        candidates = self._jobs().filter(run_id=run_id, stage_id=stage_id)
        return self._take_of_run(pick, [run_id, stage_id], candidates, worker_id, now)

    def claim_item(self, run_id: str, map_stage_id: str, worker_id: str, now: datetime) -> JobRecord | None:
        prefix = f"{map_stage_id}["
        # The inner SELECT walks dwe_job_run_pending_idx (this run's PENDING jobs in created_at order).
        pick = f"{q('run_id')} = %s AND substr({q('stage_id')}, 1, %s) = %s AND "
        candidates = self._jobs().filter(run_id=run_id, stage_id__startswith=prefix)
        return self._take_of_run(pick, [run_id, len(prefix), prefix], candidates, worker_id, now)

    def _take_of_run(
        self, pick: str, pick_params: list[Any], candidates: Any, worker_id: str, now: datetime
    ) -> JobRecord | None:
        """Claim the oldest due PENDING job among one run's ``candidates`` (``pick`` on the one-statement path) for
        ``worker_id``, withdrawing its queue message after the commit."""
        if self._single_statement():
            job = self._claim_next(pick, pick_params, f"{q('created_at')}, {q('id')}", worker_id, now)
        else:
            with transaction.atomic(using=self.using):
                row = claim_one(
                    self.using,
                    candidates.filter(status=Status.PENDING, available_at__lte=now).order_by("created_at", "id"),
                    Q(status=Status.PENDING),
                    **self._take_values(worker_id, now),
                )
            job = job_record(row) if row is not None else None
        if job is not None and self.on_withdraw is not None:
            callback, ids = self.on_withdraw, [job.id]
            transaction.on_commit(lambda: callback(ids), using=self.using, robust=True)
        return job

    def _claim_values(self, worker_id: str, now: datetime) -> dict[str, Any]:
        return {**self._take_values(worker_id, now), "attempt": PLUS_ONE}

    def _claim_next(
        self, where: str, where_params: list[Any], order_by: str, worker_id: str, now: datetime
    ) -> JobRecord | None:
        """Claim the first due PENDING job matching ``where`` (an SQL prefix ending in ``AND``, or empty) in
        ``order_by`` order, skipping rows other claimers hold: one ``UPDATE ... RETURNING`` (:func:`.statements.claim`)."""
        connection = connections[self.using]
        due, due_params = _due(connection, now)
        sql, params = claim(
            connection,
            WorkflowJob,
            self._claim_values(worker_id, now),
            where + due,
            [*where_params, *due_params],
            order_by,
            due,
            due_params,
        )
        return self._returned(sql, params)

    def _returned(self, sql: str, params: list[Any]) -> JobRecord | None:
        values = returned_row(self.using, WorkflowJob, sql, params)
        return None if values is None else JobRecord(**{name: values[name] for name in JOB_FIELDS})

    def get_job(self, job_id: str) -> JobRecord | None:
        row = self._jobs().filter(pk=job_id).first()
        return job_record(row) if row else None

    def _update(self, job_id: str, **values: Any) -> bool:
        """Update the job unless it is CANCELLED (a cancelled job stays cancelled). True if written (when
        deferred, :mod:`.deferred`: True, and a missing job raises at the flush). Every stage's outcome
        transaction has one: a hand-written statement (:func:`.statements.update`)."""
        connection = connections[self.using]
        where = f"{q('id')} = %s AND NOT ({q('status')} = %s)"
        sql, params = update(connection, WorkflowJob, values, where, [job_id, Status.CANCELLED])

        def missing(count: int) -> None:
            if count == 0 and not self._jobs().filter(pk=job_id).exists():
                raise WorkflowEngineError(f"Job {job_id!r} does not exist.")

        if deferred.deferring(self.using):
            deferred.defer(
                self.using, deferred.Write(sql, params, frozenset({(WorkflowJob._meta.db_table, job_id)}), missing)
            )
            return True
        with hot_cursor(connection) as cursor:
            cursor.execute(sql, params)
            count = cursor.rowcount
        missing(count)
        return count > 0

    def complete(self, job_id: str, now: datetime) -> None:
        self._update(job_id, status=Status.COMPLETED, completed_at=now, worker_id=None, locked_at=None, updated_at=now)

    def suspend(self, job_id: str, next_poll_at: datetime, now: datetime) -> None:
        self._update(
            job_id, status=Status.SUSPENDED, available_at=next_poll_at, worker_id=None, locked_at=None, updated_at=now
        )

    def fail(self, job_id: str, error: str, retry_at: datetime | None, now: datetime) -> None:
        common = {"last_error": error, "worker_id": None, "locked_at": None, "updated_at": now, "wait_reason": None}
        if retry_at is None:
            self._update(job_id, status=Status.FAILED, completed_at=now, **common)
        elif self._update(job_id, status=Status.PENDING, available_at=retry_at, **common):
            self._ring([job_id], retry_at if retry_at > now else None)

    def defer(self, job_id: str, until: datetime, reason: str, now: datetime) -> None:
        deferred_rows = (
            self._jobs()
            .filter(pk=job_id, status=Status.RUNNING)
            .update(
                status=Status.PENDING,
                attempt=Greatest(F("attempt") - 1, 0),
                worker_id=None,
                locked_at=None,
                available_at=until,
                wait_reason=reason[:200],
                updated_at=now,
            )
        )
        if deferred_rows:
            self._ring([job_id], until if until > now else None)

    def release(self, job_id: str, worker_id: str, now: datetime) -> bool:
        released = (
            self._jobs()
            .filter(pk=job_id, status=Status.RUNNING, worker_id=worker_id)
            .update(
                status=Status.PENDING,
                attempt=Greatest(F("attempt") - 1, 0),
                worker_id=None,
                locked_at=None,
                started_at=None,
                available_at=now,
                updated_at=now,
            )
        )
        if released:
            self._ring([job_id])
        return bool(released)

    def touch(self, job_id: str, worker_id: str, now: datetime) -> bool:
        return bool(self._jobs().filter(pk=job_id, status=Status.RUNNING, worker_id=worker_id).update(locked_at=now))

    def release_stale(self, cutoff: datetime, now: datetime) -> list[JobRecord]:
        with transaction.atomic(using=self.using):
            # Lock what we release (PostgreSQL; SQLite's writer lock serializes) so a heartbeat racing this
            # either lands first, and the job is no longer stale, or waits and then finds the lease gone.
            ids = list(self._jobs().stale(cutoff).select_for_update(skip_locked=True).values_list("pk", flat=True))
            if not ids:
                return []
            self._jobs().filter(pk__in=ids).update(
                status=Status.PENDING, worker_id=None, locked_at=None, available_at=now, updated_at=now
            )
            released = [job_record(r) for r in self._jobs().filter(pk__in=ids).order_by("created_at", "id")]
        self._ring([j.id for j in released])
        return released

    def cancel_by_run(self, run_id: str, now: datetime, include_running: bool = False) -> int:
        statuses = [Status.PENDING, Status.SUSPENDED] + ([Status.RUNNING] if include_running else [])
        return (
            self._jobs()
            .for_run(run_id)
            .filter(status__in=statuses)
            .update(status=Status.CANCELLED, completed_at=now, updated_at=now)
        )

    def complete_suspended(self, run_id: str, stage_id: str, now: datetime) -> None:
        self._jobs().filter(run_id=run_id, stage_id=stage_id, status=Status.SUSPENDED).update(
            status=Status.COMPLETED, completed_at=now, updated_at=now
        )

    def wake_suspended(self, run_id: str, stage_id: str, now: datetime) -> bool:
        suspended = self._jobs().filter(run_id=run_id, stage_id=stage_id, status=Status.SUSPENDED)
        ids = list(suspended.values_list("pk", flat=True))
        woken = (
            self._jobs()
            .filter(pk__in=ids, status=Status.SUSPENDED)
            .update(
                status=Status.PENDING,
                attempt=Greatest(F("attempt") - 1, 0),
                available_at=now,
                wait_reason=None,
                updated_at=now,
            )
        )
        if woken:
            self._ring(ids)
        return bool(woken)

    def jobs_for_run(self, run_id: str) -> list[JobRecord]:
        return [job_record(r) for r in self._jobs().for_run(run_id).order_by("created_at", "id")]

    def due_pending(self, now: datetime, older_than: datetime, limit: int) -> list[JobRecord]:
        return [job_record(r) for r in self._jobs().due(now).filter(updated_at__lte=older_than)[:limit]]
