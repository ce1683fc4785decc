"""ORM implementation of the kernel's :class:`~django_workflow_engine.kernel.ports.Persistence` port.

It behaves like :class:`~django_workflow_engine.kernel.memory.InMemoryPersistence` (the conformance suite in
``tests/conformance`` runs against both) on SQLite and PostgreSQL. Every timestamp comes from the ``now``
argument, never from the database or ``timezone.now()``, so a fake clock drives every time-based query.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from django.db import IntegrityError, connections, transaction
from django.db.models import Exists, F, Field, Max, Model, OuterRef, Q, QuerySet, Subquery
from django.db.models.sql import UpdateQuery

from ..core.errors import RunNotFound, StaleVersionError, WorkflowEngineError
from ..kernel.records import (
    IN_PROGRESS,
    AnnotationRecord,
    IdempotencyClaim,
    LogRecord,
    OutboxRecord,
    RunRecord,
    StageRecord,
    Status,
)
from ..models import (
    IdempotencyKey,
    OutboxEvent,
    WorkflowAnnotation,
    WorkflowJob,
    WorkflowLog,
    WorkflowRun,
    WorkflowStage,
)
from . import deferred
from .asyncsafe import off_the_loop
from .concurrency import OrmConcurrency
from .cursors import hot_cursor
from .signals import OrmSignals
from .sqlite import busy_guard, guard_public_methods, write_atomic

RUN_FIELDS = [f.name for f in fields(RunRecord)]


_RUN_PKEY = f"{WorkflowRun._meta.db_table}_pkey"  # PostgreSQL's name for the primary key Django created
STAGE_FIELDS = [f.name for f in fields(StageRecord)]
_FINISHED_STAGE = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)
# Vendors where a claim is one ``UPDATE ... WHERE pk = (SELECT ... LIMIT 1) RETURNING pk`` statement.
SINGLE_STATEMENT_CLAIM_VENDORS = frozenset({"postgresql", "sqlite"})


def single_statement_claims(connection: Any) -> bool:
    """Whether claims here are one hand-written ``UPDATE ... RETURNING`` statement: PostgreSQL, and SQLite from
    3.35 (the first with RETURNING). Elsewhere the adapters take the select-then-conditional-update path.
    Read at each call, so a test can switch every adapter to that path at once."""
    return connection.vendor in SINGLE_STATEMENT_CLAIM_VENDORS and connection.features.can_return_columns_from_insert


def claim_one(using: str, candidates: QuerySet, guard: Q, **values: Any) -> Any:
    """Apply ``values`` to the first row of ``candidates`` (filtered and ordered) and return it as a model
    instance (as it is after the update), or ``None`` when there is no candidate. Two concurrent callers
    never claim the same row.

    On PostgreSQL and SQLite this is one statement,
    ``UPDATE t SET ... WHERE pk = (SELECT pk ... ORDER BY ... LIMIT 1 [FOR UPDATE SKIP LOCKED]) AND guard
    RETURNING <every column>``, atomic on its own: PostgreSQL lets concurrent claimers skip each other's
    locked rows instead of queueing behind them; SQLite runs one writer at a time, so a statement cannot
    interleave with another claim. Elsewhere, the first candidate is read (``SKIP LOCKED`` where supported)
    and taken by a conditional UPDATE on ``guard``, retried a few times when another caller wins the row;
    call it inside ``atomic()`` there.
    """
    model = candidates.model
    manager = model._default_manager.using(using)
    connection = connections[using]
    locked = candidates.select_for_update(skip_locked=True)
    if single_statement_claims(connection):
        return update_returning(using, manager.filter(guard, pk=Subquery(locked.values("pk")[:1])), values)
    for _ in range(10):
        pk = locked.values_list("pk", flat=True).first()
        if pk is None:
            return None
        if manager.filter(guard, pk=pk).update(**values):
            return manager.get(pk=pk)
    return None


def update_returning(using: str, queryset: QuerySet, values: Mapping[str, Any]) -> Any:
    """``queryset.update(**values)`` for at most one row, returning that row as updated (a model instance)
    or ``None``: one ``UPDATE ... RETURNING`` statement (PostgreSQL, SQLite)."""
    model = queryset.model
    connection = connections[using]
    query: Any = queryset.query.chain(UpdateQuery)  # an UpdateQuery; the stubs type chain() as its receiver
    query.add_update_values(values)
    sql, params = query.get_compiler(using).as_sql()
    names, columns, read = row_reader(model, connection)
    with hot_cursor(connection) as cursor:
        cursor.execute(f"{sql} RETURNING {columns}", params)
        row = cursor.fetchone()
    return None if row is None else model.from_db(using, names, read(row))


def _versioned_update_sql(
    connection: Any,
    model: type[Model],
    pk: str,
    values: Mapping[str, Any],
    expected_version: int | None,
    current_only: bool = False,
) -> tuple[str, list[Any]]:
    """``UPDATE t SET ... WHERE id = %s [AND version = %s]`` for :func:`_update_values` output, written by hand:
    every stage runs several of these, and compiling them with the ORM costs more than executing them."""
    meta = model._meta
    qn = connection.ops.quote_name
    sets: list[str] = []
    params: list[Any] = []
    for name, value in values.items():
        field = cast(Field, meta.get_field(name))  # concrete columns only: callers pass field names
        if name == "version" and not isinstance(value, int):  # F("version") + 1
            sets.append(f"{qn(field.column)} = {qn(field.column)} + 1")
            continue
        sets.append(f"{qn(field.column)} = %s")
        params.append(field.get_db_prep_save(value, connection))
    sql = f"UPDATE {qn(meta.db_table)} SET {', '.join(sets)} WHERE {qn(meta.pk.column)} = %s"
    params.append(pk)
    if expected_version is not None:
        sql += f" AND {qn('version')} = %s"
        params.append(expected_version)
    if current_only:
        sql += f" AND {qn('superseded_at')} IS NULL"
    return sql, params


def insert_sql(
    using: str, model: type[Model], objs: Sequence[Model], *, ignore_conflicts: bool = False
) -> tuple[str, list[Any]]:
    """The SQL and parameters of one multi-row ``INSERT`` of ``objs`` (every concrete field, pks given, except an
    auto-increment pk, which the database assigns), written by hand like :func:`_versioned_update_sql`; values
    go through the fields' ``get_db_prep_save``. ``ignore_conflicts``: ``ON CONFLICT DO NOTHING`` (PostgreSQL,
    SQLite), so a duplicate shows as a smaller row count instead of an error that aborts the transaction."""
    connection = connections[using]
    fields = insert_fields(model)
    qn = connection.ops.quote_name
    columns = ", ".join(qn(f.column) for f in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    params = [f.get_db_prep_save(getattr(obj, f.attname), connection) for obj in objs for f in fields]
    sql = f"INSERT INTO {qn(model._meta.db_table)} ({columns}) VALUES {', '.join([row] * len(objs))}"
    return sql + (" ON CONFLICT DO NOTHING" if ignore_conflicts else ""), params


def insert_fields(model: type[Model]) -> list[Any]:
    """The columns :func:`insert_sql` writes, in order (not an auto-increment primary key)."""
    return [f for f in model._meta.concrete_fields if not getattr(f, "db_returning", False)]


def json_insert_sql(
    using: str, model: type[Model], rows: Sequence[Mapping[str, Any]], *, ignore_conflicts: bool = False
) -> tuple[str, list[Any]]:
    """PostgreSQL: ``INSERT INTO t (cols) SELECT cols FROM jsonb_populate_recordset(NULL::t, %s)
    [ON CONFLICT DO NOTHING]``: any number of new rows (``{attname: value}``; a missing one is the field's
    default) in one JSON parameter. The statement's text is the same for 1 row or 1,000 (so it is prepared
    once, and psycopg does not re-parse thousands of placeholders), and the rows stay Python dicts until the
    statement runs: a queued insert's counter can still move (:func:`json_rows`, :func:`.deferred.advance_counter`).
    """
    from psycopg.types.json import Jsonb

    sql, fields = _json_insert_statement(using, model, ignore_conflicts)
    payload = [{f.column: row[f.attname] if f.attname in row else f.get_default() for f in fields} for row in rows]
    return sql, [Jsonb(payload, dumps=_json_dumps)]


@functools.cache
def _json_insert_statement(using: str, model: type[Model], ignore_conflicts: bool) -> tuple[str, list[Any]]:
    """The text of :func:`json_insert_sql` for ``model`` (it never varies), and the fields it writes."""
    qn = connections[using].ops.quote_name
    fields = insert_fields(model)
    table = qn(model._meta.db_table)
    columns = ", ".join(qn(f.column) for f in fields)
    sql = f"INSERT INTO {table} ({columns}) SELECT {columns} FROM jsonb_populate_recordset(NULL::{table}, %s)"
    return sql + (" ON CONFLICT DO NOTHING" if ignore_conflicts else ""), fields


def json_rows(params: Sequence[Any]) -> list[dict[str, Any]]:
    """The row dicts (by column) of :func:`json_insert_sql`'s parameters, still open to change until it runs."""
    return params[0].obj


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json_dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, separators=(",", ":"))


def complete_key_sql(using: str, key: str, command_type: str, result: Any) -> tuple[str, list[Any]]:
    """``UPDATE idempotency_key SET result = %s, run_id = %s WHERE key = %s AND command_type = %s``: store a
    command's cached result (and the run it led to) on its idempotency key (deferred with the command's writes
    on PostgreSQL)."""
    connection = connections[using]
    qn = connection.ops.quote_name
    meta = IdempotencyKey._meta
    column = meta.get_field("result")
    sql = (
        f"UPDATE {qn(meta.db_table)} SET {qn(column.column)} = %s, {qn(meta.get_field('run_id').column)} = %s "
        f"WHERE {qn(meta.get_field('key').column)} = %s AND {qn(meta.get_field('command_type').column)} = %s"
    )
    return sql, [column.get_db_prep_save(result, connection), result_run_id(result), key, command_type]


def result_run_id(result: Any) -> str | None:
    """The run a command's cached result names, kept in a column of its own so that deleting a run deletes its
    idempotency keys through an index."""
    run_id = result.get("run_id") if isinstance(result, dict) else None
    return run_id if isinstance(run_id, str) else None


def expect_rows(count: int, error: Exception) -> Callable[[int], None]:
    """A deferred write's row-count check: raise ``error`` unless exactly ``count`` rows were written."""

    def check(actual: int) -> None:
        if actual != count:
            raise error

    return check


_READERS: dict[tuple[type, str], Any] = {}


def row_reader(model: type[Model], connection: Any) -> Any:
    """``(attnames, "col1, col2, ...", convert)`` for reading whole rows of ``model`` from raw SQL the way the
    ORM would (the backend's and the fields' converters: JSON, datetimes, decimals)."""
    key = (model, connection.alias)
    cached = _READERS.get(key)
    if cached is not None:
        return cached
    fields = model._meta.concrete_fields
    table = model._meta.db_table
    cols = [f.get_col(table) for f in fields]
    converters = [[*connection.ops.get_db_converters(col), *col.get_db_converters(connection)] for col in cols]
    qn = connection.ops.quote_name

    def convert(row: Sequence[Any]) -> list[Any]:
        values = []
        for value, col, convs in zip(row, cols, converters, strict=True):
            for conv in convs:
                value = conv(value, col, connection)
            values.append(value)
        return values

    reader = ([f.attname for f in fields], ", ".join(qn(f.column) for f in fields), convert)
    _READERS[key] = reader
    return reader


def _in_event_loop() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _run_in_thread(fn: Any, using: str) -> None:
    import threading

    errors: list[BaseException] = []

    def target() -> None:
        try:
            with busy_guard(using):
                fn()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections[using].close()

    thread = threading.Thread(target=target, name="dwe-async-log")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def run_record(row: WorkflowRun) -> RunRecord:
    return RunRecord(**{name: getattr(row, name) for name in RUN_FIELDS})


def stage_record(row: WorkflowStage) -> StageRecord:
    return StageRecord(**{name: getattr(row, name) for name in STAGE_FIELDS})


def _update_values(record: str, names: list[str], fields: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The ``QuerySet.update`` kwargs for an ``update_run``/``update_stage`` call, with the in-memory rules:
    any record field may be written except the primary key; ``updated_at`` is always ``now`` and ``version``
    always goes up by one (from the value given, if one is)."""
    values: dict[str, Any] = {}
    for name, value in fields.items():
        if name not in names:
            raise AttributeError(f"{record} has no field {name!r}")
        if name == "id":
            raise AttributeError(f"{record}.id is the primary key and cannot be updated")
        values[name] = value
    values["updated_at"] = now
    values["version"] = values["version"] + 1 if "version" in values else F("version") + 1
    return values


@guard_public_methods
class OrmPersistence(OrmConcurrency, OrmSignals):
    """Persistence over the Django ORM (SQLite or PostgreSQL). On SQLite its transactions take the write lock
    up front and a busy database is waited out (:mod:`.sqlite`).

    Args:
        using: the database alias every query goes to.
    """

    def __init__(self, using: str = "default"):
        self.using = using

    @property
    def _pg(self) -> bool:
        return connections[self.using].vendor == "postgresql"

    def atomic(self, defer_writes: bool = False):
        """A transaction. ``defer_writes``: on PostgreSQL, writes whose results are not needed at once leave
        together in one statement before the next read and before commit (:mod:`.deferred`); in such a block
        ``update_run``/``update_stage`` without ``expected_version`` return 0 instead of the new version."""
        if defer_writes:
            return deferred.deferred_atomic(self.using)
        return write_atomic(self.using)

    def _objects(self, model: type[Model]):
        return model._default_manager.using(self.using)

    def _runs(self):
        return self._objects(WorkflowRun)

    def _stages(self):
        """Current stage records (the default manager hides superseded ones)."""
        return self._objects(WorkflowStage)

    def _history(self):
        """Every generation's stage records."""
        return WorkflowStage.all_generations.using(self.using)

    def _versioned_update(
        self,
        model: type[Model],
        pk: str,
        values: dict[str, Any],
        expected_version: int | None,
        missing: Exception,
        current_only: bool = False,
    ) -> int:
        """One ``UPDATE ... RETURNING version`` (it is on the hot path of every stage); only when no row
        matched does a second query tell a missing row from a stale version. ``current_only``: rows a rerun
        superseded are not written (a stage record's history is read-only)."""
        connection = connections[self.using]
        sql, params = _versioned_update_sql(connection, model, pk, values, expected_version, current_only)
        if expected_version is None and deferred.deferring(self.using):
            rows = frozenset({(model._meta.db_table, pk)})
            deferred.defer(self.using, deferred.Write(sql, params, rows, expect_rows(1, missing)))
            return 0
        with hot_cursor(connection) as cursor:
            cursor.execute(f"{sql} RETURNING {connection.ops.quote_name('version')}", params)
            row = cursor.fetchone()
        if row is not None:
            return int(row[0])
        actual = model._base_manager.using(self.using).filter(pk=pk).values_list("version", flat=True).first()
        if actual is None:
            raise missing
        raise StaleVersionError(model.__name__, pk, expected_version or 0, actual)

    # -- runs -----------------------------------------------------------------------------------------------
    def create_run(self, run: RunRecord, now: datetime) -> RunRecord:
        data = {name: copy.deepcopy(getattr(run, name)) for name in RUN_FIELDS}
        data.update(created_at=now, updated_at=now, version=1)
        exists = WorkflowEngineError(f"Workflow run {run.id!r} already exists.")
        if deferred.deferring(self.using):
            # Leaves with the rest of the transaction's writes; its outbox counter can still be advanced there.
            # Its row goes first in the statement; an existing id fails there, on the primary key.
            sql, params = json_insert_sql(self.using, WorkflowRun, [data])
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
            savepoint = transaction.atomic(using=self.using) if self._pg else contextlib.nullcontext()
            with savepoint, hot_cursor(connection) as cursor:
                cursor.execute(*insert_sql(self.using, WorkflowRun, [row]))
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
        if self._pg:
            sql, params = json_insert_sql(self.using, WorkflowRun, rows)
        else:
            sql, params = insert_sql(self.using, WorkflowRun, [WorkflowRun(**r) for r in rows], ignore_conflicts=True)
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

    def _select(
        self, model: type[Model], where: str, params: Sequence[Any], order_by: str = "", lock: bool = False
    ) -> list[dict[str, Any]]:
        """Rows of ``model`` as ``{attname: value}`` dicts, read with hand-written SQL (these reads are on the
        hot path of every stage, where building them with the ORM costs more than running them) and
        converted the way the ORM would. ``lock``: ``FOR UPDATE`` on PostgreSQL (SQLite serializes writers)."""
        connection = connections[self.using]
        names, columns, convert = row_reader(model, connection)
        sql = f"SELECT {columns} FROM {connection.ops.quote_name(model._meta.db_table)} WHERE {where}"
        if order_by:
            sql += f" ORDER BY {order_by}"
        if lock and self._pg:
            sql += " FOR UPDATE"
        with hot_cursor(connection) as cursor:
            cursor.execute(sql, list(params))
            rows = cursor.fetchall()
        return [dict(zip(names, convert(row), strict=True)) for row in rows]

    def _run_by_id(self, run_id: str, lock: bool) -> RunRecord | None:
        rows = self._select(WorkflowRun, '"id" = %s', [run_id], lock=lock)
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

    def wake_suspended_stage(self, stage_pk: str, now: datetime) -> bool:
        return bool(
            self._stages()
            .filter(pk=stage_pk, status=Status.SUSPENDED)
            .update(next_poll_at=now, updated_at=now, version=F("version") + 1)
        )

    def get_run_status(self, run_id: str) -> str | None:
        return off_the_loop(lambda: self._runs().filter(pk=run_id).values_list("status", flat=True).first())

    def lock_run(self, run_id: str) -> RunRecord | None:
        return self._run_by_id(run_id, lock=True)

    def update_run(
        self, run_id: str, fields: Mapping[str, Any], now: datetime, expected_version: int | None = None
    ) -> int:
        values = _update_values("RunRecord", RUN_FIELDS, fields, now)
        return self._versioned_update(WorkflowRun, run_id, values, expected_version, RunNotFound(run_id))

    def claim_next_pending_run(self, now: datetime) -> RunRecord | None:
        with transaction.atomic(using=self.using):
            row = claim_one(
                self.using,
                # A PENDING run with a concurrency key waits for a slot: kernel/concurrency.py starts it.
                self._runs().pending().filter(concurrency_key=None).order_by("-priority", "created_at", "id"),
                Q(status=Status.PENDING),
                status=Status.RUNNING,
                started_at=now,
                updated_at=now,
                version=F("version") + 1,
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

    # -- stages ---------------------------------------------------------------------------------------------
    def get_stages(self, run_id: str) -> list[StageRecord]:
        rows = self._select(
            WorkflowStage,
            '"run_id" = %s AND "superseded_at" IS NULL',
            [run_id],
            '"execution_group", "stage_number"',
        )
        return [StageRecord(**{name: row[name] for name in STAGE_FIELDS}) for row in rows]

    def get_stage(self, run_id: str, stage_id: str) -> StageRecord | None:
        # Hand-written like get_stages: a map's items each read their own record and their map's.
        where = '"run_id" = %s AND "stage_id" = %s AND "superseded_at" IS NULL'
        rows = self._select(WorkflowStage, where, [run_id, stage_id])
        return StageRecord(**{name: rows[0][name] for name in STAGE_FIELDS}) if rows else None

    def get_stages_named(self, run_id: str, stage_ids: Sequence[str]) -> list[StageRecord]:
        where = '"run_id" = %s AND "stage_id" = ANY(%s) AND "superseded_at" IS NULL' if self._pg else ""
        if not where:
            where = (
                f'"run_id" = %s AND "stage_id" IN ({", ".join(["%s"] * len(stage_ids))}) AND "superseded_at" IS NULL'
            )
        params = [run_id, list(stage_ids)] if self._pg else [run_id, *stage_ids]
        return [StageRecord(**{n: row[n] for n in STAGE_FIELDS}) for row in self._select(WorkflowStage, where, params)]

    def get_stage_history(self, run_id: str) -> list[StageRecord]:
        rows = self._history().for_run(run_id).order_by("attempt", "execution_group", "stage_number")
        return [stage_record(r) for r in rows]

    def create_stages(self, stages: Sequence[StageRecord], now: datetime, known_new: bool = False) -> list[StageRecord]:
        if not stages:
            return []
        datas = []
        for stage in stages:
            data = {name: copy.deepcopy(getattr(stage, name)) for name in STAGE_FIELDS}
            data.update(created_at=now, updated_at=now, version=1)
            datas.append(data)
        if known_new and deferred.deferring(self.using):
            # The caller holds the run lock (or made the run) and saw none of these rows: an INSERT that leaves
            # with the transaction's other writes, no read-back.
            sql, params = json_insert_sql(self.using, WorkflowStage, datas)
            error = WorkflowEngineError(f"Could not insert {len(datas)} stage record(s).")
            deferred.defer(self.using, deferred.Write(sql, params, check=expect_rows(len(datas), error)))
            return [StageRecord(**data) for data in datas]
        rows = [WorkflowStage(**data) for data in datas]
        if known_new:
            self._stages().bulk_create(rows)
            return [stage_record(r) for r in rows]
        with transaction.atomic(using=self.using, savepoint=False):
            # ON CONFLICT DO NOTHING / INSERT OR IGNORE: an existing (run, stage_id) keeps its row untouched.
            self._stages().bulk_create(rows, ignore_conflicts=True)
            wanted = Q()
            for run_id in {s.run_id for s in stages}:
                wanted |= Q(run_id=run_id, stage_id__in=[s.stage_id for s in stages if s.run_id == run_id])
            stored = {(r.run_id, r.stage_id): stage_record(r) for r in self._stages().current().filter(wanted)}
        return [copy.deepcopy(stored[(s.run_id, s.stage_id)]) for s in stages]

    def update_stage(
        self, stage_pk: str, fields: Mapping[str, Any], now: datetime, expected_version: int | None = None
    ) -> int:
        values = _update_values("StageRecord", STAGE_FIELDS, fields, now)
        missing = WorkflowEngineError(f"Stage record {stage_pk!r} does not exist.")
        try:
            return self._versioned_update(WorkflowStage, stage_pk, values, expected_version, missing, current_only=True)
        except StaleVersionError:
            if self._history().superseded().filter(pk=stage_pk).exists():
                raise WorkflowEngineError(
                    f"Stage record {stage_pk!r} was superseded by a rerun; it is read-only."
                ) from None
            raise

    def supersede_stages_from_group(
        self, run_id: str, group: int, now: datetime, actor: str | None = None
    ) -> list[StageRecord]:
        with transaction.atomic(using=self.using):
            qs = self._stages().current().for_run(run_id).filter(execution_group__gte=group)
            replaced = [stage_record(r) for r in qs.order_by("execution_group", "stage_number")]
            if replaced:
                pks = [s.id for s in replaced]
                # Logs, AI calls, annotations and artifacts keep pointing at these rows: they are the history.
                self._stages().filter(pk__in=pks).exclude(status__in=_FINISHED_STAGE).update(
                    status=Status.CANCELLED, completed_at=now, next_poll_at=None
                )
                self._stages().filter(pk__in=pks).update(
                    superseded_at=now, superseded_by=actor, updated_at=now, version=F("version") + 1
                )
        return replaced

    def cancel_open_stages(self, run_id: str, now: datetime) -> int:
        return (
            self._stages()
            .for_run(run_id)
            .current()
            .exclude(status__in=_FINISHED_STAGE)
            .update(
                status=Status.CANCELLED, completed_at=now, next_poll_at=None, updated_at=now, version=F("version") + 1
            )
        )

    def get_due_suspended_stages(self, now: datetime, limit: int) -> list[StageRecord]:
        return [stage_record(r) for r in self._stages().suspended_due(now)[:limit]]

    # -- logs -----------------------------------------------------------------------------------------------
    def create_log(
        self,
        run_id: str | None,
        stage_pk: str | None,
        level: str,
        message: str,
        metadata: Mapping[str, Any] | None,
        now: datetime,
    ) -> None:
        def write() -> None:
            self._objects(WorkflowLog).create(
                created_at=now,
                run_id=run_id,
                stage_id=stage_pk,
                level=level,
                message=message,
                metadata=dict(metadata) if metadata else None,
            )

        if _in_event_loop():
            # ``ctx.log`` called from an ``async def`` stage: Django refuses sync queries on a thread that runs
            # an event loop, so write from a short-lived thread with its own connection.
            _run_in_thread(write, self.using)
        else:
            write()

    def get_logs(self, run_id: str) -> list[LogRecord]:
        return [
            LogRecord(r.id, r.run_id, r.stage_id, r.level, r.message, r.metadata, r.created_at)
            for r in self._objects(WorkflowLog).filter(run_id=run_id).order_by("id")
        ]

    # -- outbox ---------------------------------------------------------------------------------------------
    def append_events(self, events: Sequence[Mapping[str, Any]], causation_id: str) -> None:
        if not events:
            return
        by_run: dict[str, list[Mapping[str, Any]]] = {}
        for event in events:
            by_run.setdefault(event["workflow_run_id"], []).append(event)
        rows = []
        if deferred.deferring(self.using):
            by_run = self._append_to_new_runs(by_run, causation_id)
            if not by_run:
                return
        # savepoint=False: inside the caller's transaction this adds no SAVEPOINT round trips.
        with transaction.atomic(using=self.using, savepoint=False):
            reserved = {} if self._pg or len(by_run) == 1 else self._reserve_many(by_run)
            for run_id, items in by_run.items():
                if self._pg and self._append_in_one_statement(run_id, items, causation_id):
                    continue
                last = reserved.get(run_id)
                first = (self._reserve_sequences(run_id, len(items)) if last is None else last) - len(items) + 1
                for offset, event in enumerate(items):
                    occurred_at = datetime.fromisoformat(event["timestamp"])
                    rows.append(
                        OutboxEvent(
                            created_at=occurred_at,
                            run_id=run_id,
                            sequence=first + offset,
                            event_type=event["type"],
                            payload=dict(event),
                            causation_id=causation_id,
                            occurred_at=occurred_at,
                        )
                    )
            self._objects(OutboxEvent).bulk_create(rows)

    def _append_to_new_runs(
        self, by_run: dict[str, list[Mapping[str, Any]]], causation_id: str
    ) -> dict[str, list[Mapping[str, Any]]]:
        """Defer the events of runs whose INSERT is still queued (created in this transaction) as one multi-row
        outbox INSERT with their sequences written out, advancing each new run's ``event_seq`` in its queued
        INSERT (:func:`.deferred.advance_counter`): no ``UPDATE`` of a row that does not exist yet. Returns the
        events of the other runs, for the usual path."""
        table = WorkflowRun._meta.db_table
        rest: dict[str, list[Mapping[str, Any]]] = {}
        rows = []
        for run_id, items in by_run.items():
            before = deferred.advance_counter(self.using, table, run_id, len(items))
            if before is None:
                rest[run_id] = items
                continue
            for offset, event in enumerate(items):
                rows.append(
                    {
                        "created_at": event["timestamp"],
                        "run_id": run_id,
                        "sequence": before + 1 + offset,
                        "event_type": event["type"],
                        "payload": dict(event),
                        "causation_id": causation_id,
                        "occurred_at": event["timestamp"],
                        "retry_count": 0,
                    }
                )
        if rows:
            sql, params = json_insert_sql(self.using, OutboxEvent, rows)
            error = WorkflowEngineError(f"Could not insert {len(rows)} outbox event(s).")
            deferred.defer(self.using, deferred.Write(sql, params, check=expect_rows(len(rows), error)))
        return rest

    def _append_in_one_statement(self, run_id: str, items: Sequence[Mapping[str, Any]], causation_id: str) -> bool:
        """PostgreSQL: reserve the run's next sequences and insert its events in one statement
        (``WITH seq AS (UPDATE run ... RETURNING event_seq) INSERT INTO outbox SELECT ... FROM seq, VALUES``).
        False, with nothing written, when the run row does not exist. Deferred (:mod:`.deferred`) when writes
        are; a missing run then raises ``RunNotFound`` at the flush."""
        connection = connections[self.using]
        qn = connection.ops.quote_name
        meta = OutboxEvent._meta
        payload_field = meta.get_field("payload")
        occurred_field = meta.get_field("occurred_at")
        reserve = (
            f"UPDATE {qn(WorkflowRun._meta.db_table)} SET {qn('event_seq')} = {qn('event_seq')} + %s "
            f"WHERE {qn('id')} = %s RETURNING {qn('event_seq')}"
        )
        reserve_params = [len(items), run_id]
        values_sql = []
        insert_params: list[Any] = [run_id, len(items), causation_id]
        for offset, event in enumerate(items):
            occurred_at = occurred_field.get_db_prep_save(datetime.fromisoformat(event["timestamp"]), connection)
            values_sql.append("(%s::integer, %s::timestamptz, %s, %s::jsonb)")
            insert_params += [
                offset,
                occurred_at,
                event["type"],
                payload_field.get_db_prep_save(dict(event), connection),
            ]
        columns = ", ".join(
            qn(c) for c in ("created_at", "run_id", "sequence", "event_type", "payload", "causation_id", "occurred_at")
        )
        seq = deferred.AUX
        insert = (
            f"INSERT INTO {qn(meta.db_table)} ({columns}, {qn('retry_count')}) "
            f"SELECT v.occurred_at, %s, {seq}.event_seq - %s + 1 + v.k, v.event_type, v.payload, %s, v.occurred_at, 0 "
            f"FROM {seq}, (VALUES {', '.join(values_sql)}) AS v(k, occurred_at, event_type, payload)"
        )
        if deferred.deferring(self.using):
            rows = frozenset({(WorkflowRun._meta.db_table, run_id)})
            check = expect_rows(len(items), RunNotFound(run_id))
            deferred.defer(self.using, deferred.Write(insert, insert_params, rows, check, reserve, reserve_params))
            return True
        with hot_cursor(connection) as cursor:
            cursor.execute(f"WITH seq AS ({reserve}) {insert.replace(seq, 'seq')}", reserve_params + insert_params)
            return cursor.rowcount > 0

    def _reserve_many(self, by_run: Mapping[str, Sequence[Any]]) -> dict[str, int]:
        """:meth:`_reserve_sequences` for many runs: one ``UPDATE ... WHERE id IN (...) RETURNING`` per distinct
        event count (``start_many`` appends two events to each of a thousand runs). Runs without a row are left
        out, for :meth:`_reserve_sequences` to handle."""
        connection = connections[self.using]
        qn = connection.ops.quote_name
        by_count: dict[int, list[str]] = {}
        for run_id, items in by_run.items():
            by_count.setdefault(len(items), []).append(run_id)
        reserved: dict[str, int] = {}
        with connection.cursor() as cursor:
            for count, ids in by_count.items():
                for start in range(0, len(ids), 500):  # under SQLite's bound-parameter limit
                    chunk = ids[start : start + 500]
                    cursor.execute(
                        f"UPDATE {qn(WorkflowRun._meta.db_table)} SET {qn('event_seq')} = {qn('event_seq')} + %s "
                        f"WHERE {qn('id')} IN ({', '.join(['%s'] * len(chunk))}) RETURNING {qn('id')}, "
                        f"{qn('event_seq')}",
                        [count, *chunk],
                    )
                    reserved.update((run_id, int(seq)) for run_id, seq in cursor.fetchall())
        return reserved

    def _reserve_sequences(self, run_id: str, count: int) -> int:
        """Advance the run's event counter by ``count`` and return its new value (the last sequence reserved).

        The UPDATE row-locks the run until the transaction ends, so concurrent writers for one run take turns
        and their sequences never collide or leave gaps (a rollback undoes the counter with the events).
        """
        connection = connections[self.using]
        qn = connection.ops.quote_name
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {qn(WorkflowRun._meta.db_table)} SET {qn('event_seq')} = {qn('event_seq')} + %s "
                f"WHERE {qn('id')} = %s RETURNING {qn('event_seq')}",
                [count, run_id],
            )
            row = cursor.fetchone()
        if row is not None:
            return int(row[0])
        # No run row (e.g. deleted): continue from the highest stored sequence, serialized per run id.
        if self._pg:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"dwe-outbox:{run_id}"])
        top = self._objects(OutboxEvent).filter(run_id=run_id).aggregate(m=Max("sequence"))["m"] or 0
        return top + count

    def get_unpublished_events(self, limit: int) -> list[OutboxRecord]:
        rows = (
            self._objects(OutboxEvent)
            .filter(published_at__isnull=True, dlq_at__isnull=True)
            .order_by("run_id", "sequence")[:limit]
        )
        return [_outbox(r) for r in rows]

    def get_events(self, run_id: str) -> list[OutboxRecord]:
        return [_outbox(r) for r in self._objects(OutboxEvent).filter(run_id=run_id).order_by("sequence")]

    def mark_events_published(self, ids: Iterable[int], now: datetime) -> None:
        self._objects(OutboxEvent).filter(pk__in=list(ids)).update(published_at=now)

    def record_event_failure(self, event_id: int, max_retries: int, now: datetime, error: str | None = None) -> bool:
        qs = self._objects(OutboxEvent).filter(pk=event_id)
        with transaction.atomic(using=self.using):
            if not qs.update(retry_count=F("retry_count") + 1, last_error=error):
                return False
            return bool(qs.filter(retry_count__gte=max_retries).update(dlq_at=now))

    def replay_dead_letters(self, limit: int, event_ids: Iterable[int] | None = None) -> int:
        events = self._objects(OutboxEvent)
        with transaction.atomic(using=self.using):
            dead = events.filter(dlq_at__isnull=False)
            if event_ids is not None:
                dead = dead.filter(pk__in=list(event_ids))
            ids = list(dead.order_by("run_id", "sequence").values_list("pk", flat=True)[:limit])
            return events.filter(pk__in=ids).update(dlq_at=None, retry_count=0) if ids else 0

    # -- idempotency ----------------------------------------------------------------------------------------
    def acquire_idempotency_key(
        self, key: str, command_type: str, now: datetime, stale_after_seconds: float | None
    ) -> IdempotencyClaim:
        keys = self._objects(IdempotencyKey)
        # Two rounds: the row we collided with may be released before we read it.
        for _ in range(2):
            # Outside a transaction the INSERT commits on its own (one statement); inside one, a savepoint keeps
            # the caller's transaction usable after a duplicate key.
            guard = transaction.atomic(using=self.using) if connections[self.using].in_atomic_block else None
            try:
                with guard or contextlib.nullcontext():
                    keys.create(key=key, command_type=command_type, result=dict(IN_PROGRESS), created_at=now)
                return IdempotencyClaim("acquired")
            except IntegrityError:
                pass
            with transaction.atomic(using=self.using):
                # Locked (PostgreSQL) so a completion or a competing reclaim cannot slip between read and write.
                row = keys.select_for_update().filter(key=key, command_type=command_type).first()
                if row is None:
                    continue
                if row.result != IN_PROGRESS:
                    return IdempotencyClaim("replay", row.result)
                stale = stale_after_seconds is not None and now - row.created_at >= timedelta(
                    seconds=stale_after_seconds
                )
                # Conditional on the marker we read: of two racers only one moves created_at.
                if stale and keys.filter(pk=row.pk, created_at=row.created_at).update(created_at=now):
                    return IdempotencyClaim("acquired")
                return IdempotencyClaim("in_progress")
        return IdempotencyClaim("in_progress")

    def complete_idempotency_key(self, key: str, command_type: str, result: Any) -> None:
        if deferred.deferring(self.using):
            # In the command's own transaction (see Kernel._with_idempotency): leaves with its writes.
            sql, params = complete_key_sql(self.using, key, command_type, result)
            missing = WorkflowEngineError(f"Idempotency key {key!r} ({command_type}) vanished before completion.")
            deferred.defer(self.using, deferred.Write(sql, params, check=expect_rows(1, missing)))
            return
        self._objects(IdempotencyKey).filter(key=key, command_type=command_type).update(
            result=result, run_id=result_run_id(result)
        )

    def release_idempotency_key(self, key: str, command_type: str) -> None:
        self._objects(IdempotencyKey).filter(key=key, command_type=command_type).delete()

    def discard_idempotency_key(self, key: str, command_type: str, run_id: str) -> bool:
        keys = self._objects(IdempotencyKey).filter(key=key, command_type=command_type)
        with transaction.atomic(using=self.using):
            row = keys.select_for_update().first()
            if row is None or not isinstance(row.result, dict) or row.result.get("run_id") != run_id:
                return False
            row.delete()
            return True

    def expire_idempotency_keys(self, cutoff: datetime, limit: int) -> int:
        keys = self._objects(IdempotencyKey)
        ids = list(keys.filter(created_at__lt=cutoff).order_by("created_at").values_list("pk", flat=True)[:limit])
        return keys.filter(pk__in=ids).delete()[0] if ids else 0

    # -- annotations ----------------------------------------------------------------------------------------
    def append_annotations(self, annotations: Sequence[AnnotationRecord], now: datetime) -> list[AnnotationRecord]:
        rows = self._objects(WorkflowAnnotation)
        written = []
        for a in annotations:
            if (
                a.idempotency_key is not None
                and rows.filter(run_id=a.run_id, key=a.key, idempotency_key=a.idempotency_key).exists()
            ):
                continue
            try:
                # A savepoint: a concurrent writer of the same idempotency key makes this insert fail alone.
                with transaction.atomic(using=self.using):
                    row = rows.create(
                        created_at=now,
                        run_id=a.run_id,
                        stage_id=a.stage_pk,
                        attempt=a.attempt,
                        scope=a.scope,
                        scope_id=a.scope_id,
                        actor_kind=a.actor_kind,
                        actor_id=a.actor_id,
                        actor_version=a.actor_version,
                        key=a.key,
                        value=copy.deepcopy(a.value),
                        payload=copy.deepcopy(a.payload),
                        idempotency_key=a.idempotency_key,
                    )
            except IntegrityError:
                if a.idempotency_key is None:
                    raise
                continue
            written.append(copy.deepcopy(_annotation(row)))
        return written

    def list_annotations(self, run_id: str, filters: Mapping[str, Any]) -> list[AnnotationRecord]:
        qs = self._objects(WorkflowAnnotation).filter(run_id=run_id)
        if filters.get("key") is not None:
            qs = qs.filter(key=filters["key"])
        elif filters.get("key_prefix") is not None:
            qs = qs.filter(key__startswith=filters["key_prefix"])
        for name in ("scope", "scope_id", "actor_id", "actor_kind", "attempt"):
            if filters.get(name) is not None:
                qs = qs.filter(**{name: filters[name]})
        if filters.get("since") is not None:
            qs = qs.filter(created_at__gte=filters["since"])
        if filters.get("until") is not None:
            qs = qs.filter(created_at__lte=filters["until"])
        return [_annotation(r) for r in qs.order_by("created_at", "id")[: filters.get("limit") or 1000]]


def _outbox(r: OutboxEvent) -> OutboxRecord:
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


def _annotation(r: WorkflowAnnotation) -> AnnotationRecord:
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
