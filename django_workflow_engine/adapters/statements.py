"""The engine's hand-written SQL statements (moved here from the adapters; named and described one by one next)."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from django.db import connections
from django.db.models import Field, Model, Q, QuerySet, Subquery
from django.db.models.sql import UpdateQuery

from ..models import (
    IdempotencyKey,
)
from .cursors import hot_cursor

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
