"""The statements of the hot path and their building blocks: dialects, row reads, updates, claims, inserts;
and the SQLite session statements (the package docstring says how statements are written)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from django.db import connections
from django.db.models import Field, Model

from ...kernel.records import Status
from ...models import IdempotencyKey
from ..rows import json_dumps, result_run_id

# -- dialects -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dialect:
    """What the hand-written statements may use on one database.

    ``lock_rows``: ``FOR UPDATE`` where rows can be locked (PostgreSQL; SQLite serializes writers instead).
    ``share_rows``: ``FOR KEY SHARE``, a lock many transactions hold at once that keeps ``FOR UPDATE`` out.
    ``skip_locked``: ``FOR UPDATE SKIP LOCKED`` in a claim's inner SELECT. ``advisory_locks``:
    ``pg_advisory_xact_lock`` (elsewhere the write lock serializes). ``json_rows``: inserts of any number of rows
    in one JSON parameter (``jsonb_populate_recordset``). ``one_statement_append``: an outbox append reserves
    its sequences and inserts its events in one statement (a data-modifying CTE). ``aborts_on_error``: a failed
    statement aborts the whole transaction, so one that may fail runs in a savepoint. ``deferred_writes``: a
    transaction's writes can leave together in one statement (:mod:`.deferred`).
    """

    name: str
    lock_rows: str = ""
    share_rows: str = ""
    skip_locked: str = ""
    advisory_locks: bool = False
    json_rows: bool = False
    one_statement_append: bool = False
    aborts_on_error: bool = False
    deferred_writes: bool = False


POSTGRESQL = Dialect(
    "postgresql",
    lock_rows=" FOR UPDATE",
    share_rows=" FOR KEY SHARE",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    advisory_locks=True,
    json_rows=True,
    one_statement_append=True,
    aborts_on_error=True,
    deferred_writes=True,
)
SQLITE = Dialect("sqlite")
_DIALECTS = {"postgresql": POSTGRESQL, "sqlite": SQLITE}


def dialect(connection: Any) -> Dialect:
    """The :class:`Dialect` of ``connection`` (another database: the plainest one, SQLite's)."""
    return _DIALECTS.get(connection.vendor, SQLITE)


# Vendors where a claim is one ``UPDATE ... WHERE id = (SELECT ... LIMIT 1) RETURNING *`` statement.
SINGLE_STATEMENT_CLAIM_VENDORS = frozenset({"postgresql", "sqlite"})


def single_statement_claims(connection: Any) -> bool:
    """Whether claims here are one hand-written ``UPDATE ... RETURNING`` statement: PostgreSQL, and SQLite from
    3.35 (the first with RETURNING). Elsewhere the adapters take the select-then-conditional-update path.
    Read at each call, so a test can switch every adapter to that path at once."""
    return connection.vendor in SINGLE_STATEMENT_CLAIM_VENDORS and connection.features.can_return_columns_from_insert


@functools.cache
def q(name: str) -> str:
    """An identifier (table or column) quoted the SQL standard's way, which PostgreSQL and SQLite share."""
    return f'"{name}"'


def table(model: type[Model]) -> str:
    return q(model._meta.db_table)


# -- reading rows ---------------------------------------------------------------------------------------------

_READERS: dict[tuple[type, str, tuple[str, ...]], Any] = {}


def row_reader(model: type[Model], connection: Any, only: tuple[str, ...] = ()) -> Any:
    """``(attnames, "col1, col2, ...", convert)`` for reading whole rows of ``model`` (or the fields ``only``)
    from raw SQL the way the ORM would (the backend's and the fields' converters: JSON, datetimes, decimals)."""
    key = (model, connection.alias, only)
    cached = _READERS.get(key)
    if cached is not None:
        return cached
    fields = [f for f in model._meta.concrete_fields if not only or f.attname in only]
    cols = [f.get_col(model._meta.db_table) for f in fields]
    converters = [[*connection.ops.get_db_converters(col), *col.get_db_converters(connection)] for col in cols]

    def convert(row: Sequence[Any]) -> list[Any]:
        values = []
        for value, col, convs in zip(row, cols, converters, strict=True):
            for conv in convs:
                value = conv(value, col, connection)
            values.append(value)
        return values

    reader = ([f.attname for f in fields], ", ".join(q(f.column) for f in fields), convert)
    _READERS[key] = reader
    return reader


def select_rows(
    connection: Any,
    model: type[Model],
    where: str,
    order_by: str = "",
    lock: bool = False,
    share: bool = False,
    only: tuple[str, ...] = (),
) -> str:
    """select_rows -- Read whole rows of ``model`` (or the fields ``only``) matching ``where``, [ordered] [locked].

    The run and stage reads of every stage (``OrmStore._select``); ``lock``: ``FOR UPDATE`` where rows lock,
    ``share``: ``FOR KEY SHARE`` there (``share_run``)."""
    _names, columns, _convert = row_reader(model, connection, only)
    sql = f"SELECT {columns} FROM {table(model)} WHERE {where}" + (f" ORDER BY {order_by}" if order_by else "")
    return sql + (dialect(connection).lock_rows if lock else dialect(connection).share_rows if share else "")


# -- updates --------------------------------------------------------------------------------------------------


class _PlusOne:
    """An UPDATE value: the column's own value plus one (``version``, a claim's ``attempt``)."""

    def __repr__(self) -> str:
        return "PLUS_ONE"


PLUS_ONE = _PlusOne()


def update(
    connection: Any,
    model: type[Model],
    values: Mapping[str, Any],
    where: str,
    where_params: Sequence[Any],
    returning: str | None = None,
) -> tuple[str, list[Any]]:
    """update -- Set columns of the rows of ``model`` matching ``where`` (the one UPDATE builder).

    ``values``: ``{field name: value}`` (concrete fields; :data:`PLUS_ONE` adds one to the column).
    ``returning``: a ``RETURNING`` list. Every hand-written UPDATE goes through it."""
    sets, params = assignments(connection, model, values)
    sql = f"UPDATE {table(model)} SET {sets} WHERE {where}"
    return sql + (f" RETURNING {returning}" if returning else ""), [*params, *where_params]


def assignments(connection: Any, model: type[Model], values: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """The ``SET`` list of :func:`update` and its parameters."""
    meta = model._meta
    sets: list[str] = []
    params: list[Any] = []
    for name, value in values.items():
        field = cast(Field, meta.get_field(name))  # concrete columns only: callers pass field names
        column = q(field.column)
        if value is PLUS_ONE:
            sets.append(f"{column} = {column} + 1")
            continue
        sets.append(f"{column} = %s")
        params.append(field.get_db_prep_save(value, connection))
    return ", ".join(sets), params


@dataclass(frozen=True)
class RowUpdate:  # one row's UPDATE, whole and as its SET list and WHERE clause (.deferred.take_row_update)
    table: str
    pk: str
    sql: str
    params: list[Any]
    sets: str
    set_params: list[Any]
    where: str
    where_params: list[Any]


def versioned_update(
    connection: Any,
    model: type[Model],
    pk: str,
    values: Mapping[str, Any],
    expected_version: int | None,
    current_only: bool = False,
) -> RowUpdate:
    """versioned_update -- Update one run or stage row by id [at the version read] [if not superseded].

    ``update_run``/``update_stage``: several per stage; without ``RETURNING`` (the caller adds it, or defers the
    write)."""
    where = f"{q(model._meta.pk.column)} = %s"
    where_params: list[Any] = [pk]
    if expected_version is not None:
        where += f" AND {q('version')} = %s"
        where_params.append(expected_version)
    if current_only:
        # Not ``superseded_at IS NULL``: that predicate matches the partial index ``dwe_stage_run_stage_uniq``,
        # and a prepared statement's generic plan made while the table looked empty walked that whole index on
        # every stage instead of using the primary key (benchmarks/README.md, "what each cut bought").
        where += f" AND COALESCE({q('superseded_at')} IS NULL, false)"
    sets, set_params = assignments(connection, model, values)
    sql = f"UPDATE {table(model)} SET {sets} WHERE {where}"
    params = [*set_params, *where_params]
    return RowUpdate(model._meta.db_table, pk, sql, params, sets, set_params, where, where_params)


def claim(
    connection: Any,
    model: type[Model],
    values: Mapping[str, Any],
    pick: str,
    pick_params: Sequence[Any],
    order_by: str,
    guard: str,
    guard_params: Sequence[Any],
    limit: int = 1,
) -> tuple[str, list[Any]]:
    """claim -- Take the first row matching ``pick`` in ``order_by`` order, still matching ``guard``, in one statement.

    ``UPDATE t SET ... WHERE id = (SELECT id ... LIMIT 1 [FOR UPDATE SKIP LOCKED]) AND guard RETURNING *``:
    atomic on its own. PostgreSQL lets concurrent claimers skip each other's locked rows instead of queueing
    behind them; SQLite runs one writer at a time, so the statement cannot interleave with another claim. The
    job queue's ``dequeue``/``claim_stage`` and ``claim_next_pending_run``. With ``limit``, up to that many rows
    (``dequeue_many``), returned in no particular order."""
    _names, columns, _convert = row_reader(model, connection)
    lock = dialect(connection).skip_locked
    pk = q(model._meta.pk.column)
    picked = f"SELECT {pk} FROM {table(model)} WHERE {pick} ORDER BY {order_by} LIMIT {int(limit)}{lock}"
    if limit == 1:
        where = f"{pk} = ({picked}) AND {guard}"
    elif lock:
        # ARRAY(...) is evaluated once. Under IN (...) PostgreSQL may rescan the locking subquery, each rescan
        # skipping the rows the last one locked: more than ``limit`` rows were taken.
        where = f"{pk} = ANY(ARRAY({picked})) AND {guard}"
    else:
        where = f"{pk} IN ({picked}) AND {guard}"
    return update(connection, model, values, where, [*pick_params, *guard_params], returning=columns)


def claim_by_id(
    connection: Any, model: type[Model], values: Mapping[str, Any], pk: str, guard: str, guard_params: Sequence[Any]
) -> tuple[str, list[Any]]:
    """claim_by_id -- Take one row by id if it still matches ``guard``, returning it whole.

    The RQ path's claim: every queue-delivered stage starts with it."""
    _names, columns, _convert = row_reader(model, connection)
    where = f"{q(model._meta.pk.column)} = %s AND {guard}"
    return update(connection, model, values, where, [pk, *guard_params], returning=columns)


def update_open_stage(
    connection: Any,
    model: type[Model],
    values: Mapping[str, Any],
    run_id: str,
    stage_id: str,
    statuses: Sequence[str],
    pk: str | None,
) -> tuple[str, list[Any]]:
    """update_open_stage -- Update the current record of a run's stage [that record] if in one of ``statuses``, returning it.

    A map's item starting and recording its outcome without the run lock (the index ``dwe_stage_run_stage_uniq``)."""
    where = f"{q('run_id')} = %s AND {q('stage_id')} = %s AND {q('superseded_at')} IS NULL AND {q('status')} IN "
    where += f"({', '.join(['%s'] * len(statuses))})" + (f" AND {q('id')} = %s" if pk is not None else "")
    params = [run_id, stage_id, *statuses, *([pk] if pk is not None else [])]
    return update(connection, model, values, where, params, returning=row_reader(model, connection)[1])


def count_map_items(
    connection: Any, model: type[Model], run_id: str, stage_id: str, done: int, failed: Sequence[int], now: datetime
) -> tuple[str, list[Any]]:
    """count_map_items -- Count settled items in a RUNNING map record's metrics, returning the record (PostgreSQL).

    ``map_done`` + done, the indexes ``failed`` joined to ``map_failed`` (sorted, once each), ``map_queued`` up by
    the items newly settled (at most ``map_items``): one UPDATE, so concurrent items take turns on the map's row
    for this statement and their commit only, each reading its own count back."""
    from psycopg.types.json import Jsonb

    m, items, known = (
        q("metrics"),
        f"({q('metrics')}->>'map_items')::int",
        f"COALESCE({q('metrics')}->'map_failed', '[]')",
    )
    new = f"(SELECT count(DISTINCT n.v) FROM jsonb_array_elements(%s) n(v) WHERE NOT {known} @> jsonb_build_array(n.v))"
    sql = (
        f"UPDATE {table(model)} SET {m} = COALESCE({m}, '{{}}') || jsonb_build_object('map_done', "
        f"COALESCE(({m}->>'map_done')::int, 0) + %s, 'map_failed', (SELECT COALESCE(jsonb_agg(DISTINCT f.v ORDER BY "
        f"f.v), '[]') FROM jsonb_array_elements({known} || %s) f(v)), 'map_queued', LEAST({items}, "
        f"COALESCE(({m}->>'map_queued')::int, {items}) + %s + {new})), {q('updated_at')} = %s, {q('version')} = "
        f"{q('version')} + 1 WHERE {q('run_id')} = %s AND {q('stage_id')} = %s AND {q('superseded_at')} IS NULL "
        f"AND {q('status')} = '{Status.RUNNING.value}' RETURNING {row_reader(model, connection)[1]}"
    )
    stamp = cast(Field, model._meta.get_field("updated_at")).get_db_prep_save(now, connection)
    failed_json = Jsonb(sorted(set(failed)))
    return sql, [done, failed_json, done, failed_json, stamp, run_id, stage_id]


def complete_idempotency_key(using: str, key: str, command_type: str, result: Any) -> tuple[str, list[Any]]:
    """complete_idempotency_key -- Store a command's cached result (and the run it led to) on its key.

    Deferred with the command's writes on PostgreSQL."""
    connection = connections[using]
    values = {"result": result, "run_id": result_run_id(result)}
    return update(
        connection, IdempotencyKey, values, f"{q('key')} = %s AND {q('command_type')} = %s", [key, command_type]
    )


# -- inserts --------------------------------------------------------------------------------------------------


def insert_fields(model: type[Model]) -> list[Any]:
    """The columns :func:`insert` writes, in order (not an auto-increment primary key)."""
    return [f for f in model._meta.concrete_fields if not getattr(f, "db_returning", False)]


def insert(
    using: str, model: type[Model], objs: Sequence[Model], *, ignore_conflicts: bool = False
) -> tuple[str, list[Any]]:
    """insert -- Insert model instances in one multi-row statement [skipping rows whose key exists].

    Every concrete field, pks given, except an auto-increment pk, which the database assigns.
    ``ignore_conflicts``: ``ON CONFLICT DO NOTHING`` (PostgreSQL, SQLite), so a duplicate shows as a smaller row
    count instead of an error that aborts the transaction."""
    connection = connections[using]
    fields = insert_fields(model)
    columns = ", ".join(q(f.column) for f in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    params = [f.get_db_prep_save(getattr(obj, f.attname), connection) for obj in objs for f in fields]
    sql = f"INSERT INTO {table(model)} ({columns}) VALUES {', '.join([row] * len(objs))}"
    return sql + (" ON CONFLICT DO NOTHING" if ignore_conflicts else ""), params


def json_insert(
    using: str, model: type[Model], rows: Sequence[Mapping[str, Any]], *, ignore_conflicts: bool = False
) -> tuple[str, list[Any]]:
    """json_insert -- Insert any number of rows given as one JSON parameter (PostgreSQL).

    ``INSERT INTO t (cols) SELECT cols FROM jsonb_populate_recordset(NULL::t, %s) [ON CONFLICT DO NOTHING]``:
    rows are ``{attname: value}`` (a missing one is the field's default). The statement's text is the same for
    1 row or 1,000 (so it is prepared once, and psycopg does not re-parse thousands of placeholders), and the
    rows stay Python dicts until the statement runs: a queued insert's counter can still move
    (:func:`json_rows`, :func:`.deferred.advance_counter`)."""
    from psycopg.types.json import Jsonb

    sql, fields = _json_insert_text(model, ignore_conflicts)
    payload = [{f.column: row[f.attname] if f.attname in row else f.get_default() for f in fields} for row in rows]
    return sql, [Jsonb(payload, dumps=json_dumps)]


def all_or_error(sql: str) -> bool:
    """Whether a data-modifying statement either fails or writes every row it was given: a plain ``INSERT``
    (not ``ON CONFLICT DO NOTHING``, which skips rows). Its row count then needs no check after it succeeds."""
    return sql.startswith("INSERT ") and "ON CONFLICT" not in sql


@functools.cache
def _json_insert_text(model: type[Model], ignore_conflicts: bool) -> tuple[str, list[Any]]:
    fields = insert_fields(model)
    columns = ", ".join(q(f.column) for f in fields)
    sql = f"INSERT INTO {table(model)} ({columns}) SELECT {columns} FROM jsonb_populate_recordset(NULL::{table(model)}, %s)"
    return sql + (" ON CONFLICT DO NOTHING" if ignore_conflicts else ""), fields


def json_rows(params: Sequence[Any]) -> list[dict[str, Any]]:
    """The row dicts (by column) of :func:`json_insert`'s parameters, still open to change until it runs."""
    return params[0].obj


# -- SQLite ---------------------------------------------------------------------------------------------------

DEFERRED_BEGINS = frozenset({"BEGIN", "BEGIN DEFERRED", "BEGIN TRANSACTION", "BEGIN DEFERRED TRANSACTION"})
"""deferred_begins -- How Django begins a SQLite transaction; :mod:`.sqlite` sends :data:`BEGIN_IMMEDIATE` instead."""

BEGIN_IMMEDIATE = "BEGIN IMMEDIATE"
"""begin_immediate -- Begin a transaction that takes SQLite's write lock at once (:mod:`.sqlite`)."""

JOURNAL_MODE = "PRAGMA journal_mode"
"""journal_mode -- Read SQLite's journal mode (``wal``, ``delete``, ...)."""

JOURNAL_MODE_WAL = "PRAGMA journal_mode=WAL"
"""journal_mode_wal -- Switch the database file to write-ahead logging (it persists in the file)."""
