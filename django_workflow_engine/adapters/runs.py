"""ORM persistence of workflow runs (a part of :class:`~.persistence.OrmPersistence`)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models import Exists, F, OuterRef, Q

from ..core.errors import RunNotFound, WorkflowEngineError
from ..kernel.records import (
    RunRecord,
    Status,
)
from ..models import (
    WorkflowJob,
    WorkflowRun,
    WorkflowStage,
)
from . import batches, deferred
from .asyncsafe import off_the_loop
from .cursors import hot_cursor
from .rows import RUN_FIELDS, detached, run_record
from .sqlite import guard_public_methods
from .statements import PLUS_ONE, claim, insert, json_insert, json_rows, q, single_statement_claims
from .store import OrmStore, claim_one, expect_rows, returned_row, update_values

_RUN_PKEY = f"{WorkflowRun._meta.db_table}_pkey"  # PostgreSQL's name for the primary key Django created


# What lock_run(known=...) reads again when the run's version has not moved: the columns written without moving it
# (the AI spend add_run_totals adds up), and the version itself. Every other write of a run row moves the version.
_REFRESHED = ("status", "version", "total_cost", "total_tokens", "updated_at")


@guard_public_methods
class OrmRuns(OrmStore):
    """Workflow runs: create, read, lock, update, claim, find the overdue and the stuck."""

    # -- runs -----------------------------------------------------------------------------------------------
    def create_run(self, run: RunRecord, now: datetime) -> RunRecord:
        data = {name: detached(getattr(run, name)) for name in RUN_FIELDS}
        data.update(created_at=now, updated_at=now, version=1)
        exists = WorkflowEngineError(f"Workflow run {run.id!r} already exists.")
        if deferred.deferring(self.using):
            # Leaves with the rest of the transaction's writes; its outbox counter can still be advanced there.
            # Its row goes first in the statement; an existing id fails there, on the primary key.
            sql, params = json_insert(self.using, WorkflowRun, [data])
            key = (WorkflowRun._meta.db_table, run.id)
            counters = {key: (json_rows(params)[0], "event_seq")}
            deferred.defer(
                self.using,
                deferred.Write(
                    sql,
                    params,
                    frozenset({key}),
                    expect_rows(1, exists),
                    counters=counters,
                    duplicate=(_RUN_PKEY, exists),
                ),
            )
            return RunRecord(**data)
        row = WorkflowRun(**data)
        connection = connections[self.using]
        try:
            # PostgreSQL aborts a transaction at a failed statement: the savepoint keeps the caller's usable for
            # the check below. SQLite does not, and needs none.
            savepoint = (
                transaction.atomic(using=self.using) if self._dialect.aborts_on_error else contextlib.nullcontext()
            )
            with savepoint, hot_cursor(connection) as cursor:
                cursor.execute(*insert(self.using, WorkflowRun, [row]))
        except IntegrityError:
            if self._runs().filter(pk=run.id).exists():
                raise exists from None
            raise
        return run_record(row)

    def create_runs(self, runs: Sequence[RunRecord], now: datetime) -> list[RunRecord]:
        if not runs:
            return []
        # Shallow copies: the records are the caller's new ones, and the rows become JSON or SQL parameters
        # (deep-copying every input cost more than the statement).
        rows = [
            {**{name: getattr(run, name) for name in RUN_FIELDS}, "created_at": now, "updated_at": now, "version": 1}
            for run in runs
        ]
        exists = WorkflowEngineError(f"A workflow run among {len(rows)} ({rows[0]['id']!r}...) already exists.")
        if self._dialect.json_rows:
            sql, params = json_insert(self.using, WorkflowRun, rows)
        else:
            sql, params = insert(self.using, WorkflowRun, [WorkflowRun(**r) for r in rows], ignore_conflicts=True)
        if deferred.deferring(self.using):
            table = WorkflowRun._meta.db_table
            counters = {(table, row["id"]): (row, "event_seq") for row in json_rows(params)}
            deferred.defer(
                self.using,
                deferred.Write(
                    sql,
                    params,
                    frozenset(counters),
                    expect_rows(len(rows), exists),
                    counters=counters,
                    duplicate=(_RUN_PKEY, exists),
                ),
            )
        else:
            # All or none: a duplicate rolls back the rows inserted with it (and the caller's transaction).
            try:
                with transaction.atomic(using=self.using, savepoint=False), hot_cursor(connections[self.using]) as c:
                    c.execute(sql, params)
                    if c.rowcount != len(rows):
                        raise exists
            except IntegrityError as exc:
                raise exists from exc
        return [RunRecord(**data) for data in rows]

    def _run_by_id(self, run_id: str, lock: bool) -> RunRecord | None:
        rows = self._select(WorkflowRun, f"{q('id')} = %s", [run_id], lock=lock)
        return RunRecord(**{name: rows[0][name] for name in RUN_FIELDS}) if rows else None

    def get_run(self, run_id: str) -> RunRecord | None:
        return self._run_by_id(run_id, lock=False)

    def get_child_runs(
        self, *, parent_stage_id: str | None = None, parent_run_id: str | None = None
    ) -> list[RunRecord]:
        rows = self._runs()
        rows = (
            rows.filter(parent_stage_id=parent_stage_id)
            if parent_stage_id
            else rows.filter(parent_run_id=parent_run_id)
        )
        return [run_record(r) for r in rows.order_by("created_at", "id")]

    def get_run_status(self, run_id: str) -> str | None:
        return off_the_loop(lambda: self._runs().filter(pk=run_id).values_list("status", flat=True).first())

    def lock_run(self, run_id: str, known: RunRecord | None = None) -> RunRecord | None:
        locked = batches.take_run(self.using, run_id)
        if locked is not None:  # locked at the start of the batch this transaction is
            return locked
        if known is None or known.id != run_id:
            run = self._run_by_id(run_id, lock=True)
        else:
            rows = self._select(WorkflowRun, f"{q('id')} = %s", [run_id], lock=True, only=_REFRESHED)
            if not rows:
                run = None
            elif rows[0]["version"] == known.version:
                run = dataclasses.replace(known, **rows[0])
            else:  # written since the caller read it: read it whole (the row is locked now)
                run = self._run_by_id(run_id, lock=False)
        if run is not None and self._dialect.lock_rows:
            deferred.note_locked(self.using, WorkflowRun._meta.db_table, run_id, run.version)
        return run

    def update_run(
        self, run_id: str, fields: Mapping[str, Any], now: datetime, expected_version: int | None = None
    ) -> int:
        values = update_values("RunRecord", RUN_FIELDS, fields, now)
        return self._versioned_update(WorkflowRun, run_id, values, expected_version, RunNotFound(run_id))

    def claim_next_pending_run(self, now: datetime) -> RunRecord | None:
        values = {"status": Status.RUNNING, "started_at": now, "updated_at": now, "version": PLUS_ONE}
        connection = connections[self.using]
        if single_statement_claims(connection):
            # A PENDING run with a concurrency key waits for a slot: kernel/concurrency.py starts it.
            pick = f"{q('status')} = %s AND {q('concurrency_key')} IS NULL"
            order = f"{q('priority')} DESC, {q('created_at')}, {q('id')}"
            guard = f"{q('status')} = %s"
            sql, params = claim(connection, WorkflowRun, values, pick, [Status.PENDING], order, guard, [Status.PENDING])
            data = returned_row(self.using, WorkflowRun, sql, params)
            return None if data is None else RunRecord(**{name: data[name] for name in RUN_FIELDS})
        with transaction.atomic(using=self.using):
            row = claim_one(
                self.using,
                self._runs().pending().filter(concurrency_key=None).order_by("-priority", "created_at", "id"),
                Q(status=Status.PENDING),
                **{**values, "version": F("version") + 1},
            )
            return run_record(row) if row is not None else None

    def get_runs_past_deadline(self, now: datetime, limit: int = 100) -> list[RunRecord]:
        rows = (
            self._runs()
            .filter(deadline_at__lte=now, status__in=[Status.PENDING, Status.RUNNING, Status.SUSPENDED])
            .order_by("deadline_at")[:limit]
        )
        return [run_record(row) for row in rows]

    def get_stuck_runs(self, cutoff: datetime, limit: int = 100) -> list[RunRecord]:
        active_stage = (
            WorkflowStage.objects.current()
            .filter(run=OuterRef("pk"))
            .filter(
                Q(updated_at__gt=cutoff)
                | Q(status=Status.SUSPENDED, next_poll_at__gt=cutoff)
                | Q(status=Status.SUSPENDED, max_wait_until__gt=cutoff)
            )
        )
        live_job = WorkflowJob.objects.filter(run=OuterRef("pk"), status__in=[Status.PENDING, Status.RUNNING])
        rows = (
            self._runs()
            .running()
            .filter(updated_at__lte=cutoff)
            .filter(~Exists(active_stage), ~Exists(live_job))
            .order_by("updated_at", "created_at", "id")[:limit]
        )
        return [run_record(r) for r in rows]

    def add_run_totals(self, run_id: str, cost: Decimal, tokens: int) -> None:
        self._runs().filter(pk=run_id).update(
            total_cost=F("total_cost") + Decimal(cost), total_tokens=F("total_tokens") + int(tokens)
        )
