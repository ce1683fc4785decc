"""The base of the ORM persistence adapter's parts (:class:`~.persistence.OrmPersistence`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from django.db import connections
from django.db.models import Model, Q, QuerySet

from ..core.errors import StaleVersionError
from ..kernel.records import RunBatch, RunRecord, StageRecord
from ..models import (
    WorkflowRun,
    WorkflowStage,
)
from . import batches, deferred
from .cursors import hot_cursor
from .rows import RUN_FIELDS, STAGE_FIELDS
from .sqlite import guard_public_methods
from .statements import PLUS_ONE, Dialect, dialect, q, row_reader, select_rows, versioned_update


def expect_rows(count: int, error: Exception) -> Callable[[int], None]:
    """A deferred write's row-count check: raise ``error`` unless exactly ``count`` rows were written."""

    def check(actual: int) -> None:
        if actual != count:
            raise error

    return check


def update_values(record: str, names: list[str], fields: Mapping[str, Any], now: datetime) -> dict[str, Any]:
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
    values["version"] = values["version"] + 1 if "version" in values else PLUS_ONE
    return values


@guard_public_methods
class OrmStore:
    """What the persistence mixins share: the database alias, transactions, the model managers, the versioned
    UPDATE and the hot-path SELECT."""

    def __init__(self, using: str = "default"):
        self.using = using

    @property
    def _dialect(self) -> Dialect:
        return dialect(connections[self.using])

    def atomic(self):
        """A transaction. On PostgreSQL, writes whose results are not needed at once leave together in one
        statement before the next read and before the block ends (:mod:`.deferred`): ``update_run`` and
        ``update_stage`` without ``expected_version`` then return 0 instead of the new version. On SQLite: a
        transaction that takes the write lock up front (:mod:`.sqlite`)."""
        opened = batches.current(self.using)
        return deferred.deferred_atomic(self.using) if opened is None else batches.joined(opened)

    @contextmanager
    def batch(self, run_ids: Sequence[str], stages: bool = False) -> Iterator[RunBatch]:
        """One transaction for the steps of several runs (:mod:`.batches`): the runs locked in id order, and
        their current stages read, with one statement each."""
        if batches.current(self.using) is not None:
            raise RuntimeError("OrmPersistence.batch() cannot be nested")
        ids = sorted(set(run_ids))
        with self.atomic():
            opened = RunBatch()
            for row in self._select(WorkflowRun, f"{q('id')} IN ({batches.marks(ids)})", ids, q("id"), lock=True):
                opened.runs[row["id"]] = RunRecord(**{name: row[name] for name in RUN_FIELDS})
                if self._dialect.lock_rows:
                    deferred.note_locked(self.using, WorkflowRun._meta.db_table, row["id"], row["version"])
            if stages and opened.runs:
                found = sorted(opened.runs)
                where = f"{q('run_id')} IN ({batches.marks(found)}) AND {q('superseded_at')} IS NULL"
                order = f"{q('run_id')}, {q('execution_group')}, {q('stage_number')}"
                opened.stages = {run_id: [] for run_id in found}
                for row in self._select(WorkflowStage, where, found, order):
                    opened.stages[row["run_id"]].append(StageRecord(**{name: row[name] for name in STAGE_FIELDS}))
            batches.open_batch(self.using, opened)
            try:
                yield opened
            finally:
                batches.close_batch(self.using)

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
        update = versioned_update(connection, model, pk, values, expected_version, current_only)
        sql, params = update.sql, update.params
        db_table = model._meta.db_table
        if deferred.deferring(self.using) and (
            expected_version is None or deferred.locked_version(self.using, db_table, pk) == expected_version
        ):
            # Unguarded, or guarded by a version this transaction read under the row's lock: it cannot be stale.
            check = expect_rows(1, missing if expected_version is None else self._stale(model, pk, expected_version))
            rows = frozenset({(db_table, pk)})
            deferred.defer(self.using, deferred.Write(sql, params, rows, check, row_update=update))
            if expected_version is None:
                return 0
            deferred.note_locked(self.using, db_table, pk, expected_version + 1)  # still locked, one version on
            return expected_version + 1
        with hot_cursor(connection) as cursor:
            cursor.execute(f"{sql} RETURNING {q('version')}", params)
            row = cursor.fetchone()
        if row is not None:
            return int(row[0])
        actual = model._base_manager.using(self.using).filter(pk=pk).values_list("version", flat=True).first()
        if actual is None:
            raise missing
        raise StaleVersionError(model.__name__, pk, expected_version or 0, actual)

    @staticmethod
    def _stale(model: type[Model], pk: str, expected_version: int) -> Exception:
        return StaleVersionError(model.__name__, pk, expected_version, expected_version)

    def _select(
        self,
        model: type[Model],
        where: str,
        params: Sequence[Any],
        order_by: str = "",
        lock: bool = False,
        share: bool = False,
        only: tuple[str, ...] = (),
    ) -> list[dict[str, Any]]:
        """Rows of ``model`` (or their fields ``only``) as ``{attname: value}`` dicts, read with hand-written SQL
        (these reads are on the hot path of every stage, where building them with the ORM costs more than running
        them) and converted the way the ORM would (:func:`~.statements.select_rows`)."""
        connection = connections[self.using]
        names, _columns, convert = row_reader(model, connection, only)
        with hot_cursor(connection) as cursor:
            cursor.execute(select_rows(connection, model, where, order_by, lock, share, only), list(params))
            rows = cursor.fetchall()
        return [dict(zip(names, convert(row), strict=True)) for row in rows]


def returned_rows(using: str, model: type[Model], sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
    """Run a statement that returns whole rows of ``model`` (``RETURNING`` every column) and read them the way
    the ORM would, as ``{attname: value}``."""
    connection = connections[using]
    names, _columns, convert = row_reader(model, connection)
    with hot_cursor(connection) as cursor:
        cursor.execute(sql, list(params))
        rows = cursor.fetchall()
    return [dict(zip(names, convert(row), strict=True)) for row in rows]


def returned_row(using: str, model: type[Model], sql: str, params: Sequence[Any]) -> dict[str, Any] | None:
    """Run a statement that returns at most one whole row of ``model`` (``RETURNING`` every column, see
    :func:`~.statements.claim`) and read it the way the ORM would, as ``{attname: value}``."""
    connection = connections[using]
    names, _columns, convert = row_reader(model, connection)
    with hot_cursor(connection) as cursor:
        cursor.execute(sql, list(params))
        row = cursor.fetchone()
    return None if row is None else dict(zip(names, convert(row), strict=True))


def claim_one(using: str, candidates: QuerySet, guard: Q, **values: Any) -> Any:
    """Where claims are not one statement (:func:`~.statements.single_statement_claims`): apply ``values`` to the
    first row of ``candidates`` (filtered and ordered) with the ORM and return it as updated (a model instance), or
    ``None``. The first candidate is read (``SKIP LOCKED`` where supported) and taken by a conditional UPDATE on
    ``guard``, retried a few times when another caller wins the row; call it inside ``atomic()``."""
    manager = candidates.model._default_manager.using(using)
    locked = candidates.select_for_update(skip_locked=True)
    for _ in range(10):
        pk = locked.values_list("pk", flat=True).first()
        if pk is None:
            return None
        if manager.filter(guard, pk=pk).update(**values):
            return manager.get(pk=pk)
    return None
