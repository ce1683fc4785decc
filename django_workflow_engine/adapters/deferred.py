"""Deferred writes: on PostgreSQL, the writes of one short transaction leave in one statement.

Inside ``OrmPersistence.atomic()`` the adapters queue the writes whose results the kernel does
not need at once (stage and job updates, inserts of new rows, outbox appends) instead of executing them. The
queue is flushed as a single statement, ``WITH w0 AS (UPDATE ... RETURNING 1), w1 AS (INSERT ... RETURNING 1)
SELECT (SELECT count(*) FROM w0), ...``, right before any other statement runs on the connection (a read sees
every earlier write) and before the transaction commits. Each write's row count is then checked as if it had
run alone (a missing row still raises).

Two writes to one row never share a statement (PostgreSQL would apply only one of them): such a write flushes
the queue first. A row whose INSERT is still queued can have a counter column advanced in that INSERT instead
(:func:`advance_counter`: a new run's outbox sequence), so creating a run and appending its events stay one
statement. SQLite and other databases execute every write at once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, connections, transaction

from .cursors import hot_cursor
from .sqlite import write_atomic
from .statements import RowUpdate, all_or_error, combined_writes, dialect


@dataclass
class Write:
    """One queued write.

    ``sql`` is a data-modifying statement without ``RETURNING``. ``aux_sql`` is an optional data-modifying
    statement ``sql`` reads from under the name ``__dwe_aux__`` (it must have a ``RETURNING`` clause).
    ``rows``: ``(table, pk)`` pairs it updates. ``check(count)`` is called with its row count after the flush.
    ``counters``: for an INSERT, ``{(table, pk): (container, key)}`` where ``container[key]`` holds a counter
    column of that new row which :func:`advance_counter` may still raise before the statement runs.
    """

    sql: str
    params: Sequence[Any]
    rows: frozenset[tuple[str, str]] = frozenset()
    check: Callable[[int], None] | None = None
    aux_sql: str | None = None
    aux_params: Sequence[Any] = ()
    counters: Mapping[tuple[str, str], tuple[Any, Any]] = field(default_factory=dict)
    # (constraint name, error): the error to raise instead of the unique violation of that constraint (a new
    # row whose key exists already), so callers see the same error as from an immediate write.
    duplicate: tuple[str, Exception] | None = None
    # A single-row ``UPDATE`` as its parts, so a later write to that row may carry it (:func:`take_row_update`).
    row_update: RowUpdate | None = None

    @property
    def all_or_error(self) -> bool:
        """Whether the write either fails as a statement or writes every row it has (a plain ``INSERT``): a
        row-count check after it cannot fail, so it may leave in a statement committed on its own."""
        return self.aux_sql is None and all_or_error(self.sql)


@dataclass
class _Queue:
    writes: list[Write] = field(default_factory=list)
    rows: set[tuple[str, str]] = field(default_factory=set)
    counters: dict[tuple[str, str], tuple[Any, Any]] = field(default_factory=dict)
    flushing: bool = False
    # Rows this transaction locked (``SELECT ... FOR UPDATE``), with the version read: no one else can change
    # them before it ends, so a version-guarded update of one cannot fail and may be deferred.
    locked: dict[tuple[str, str], int] = field(default_factory=dict)
    # Channels to ``pg_notify`` in the flushed statement (:func:`notify_with`).
    notify: set[str] = field(default_factory=set)


# The open queue of each database alias, per thread (a Django connection belongs to one thread). Looked up many
# times a stage, which through ``connections[using]`` (asgiref's context-local storage) costs several times more.
_QUEUES = threading.local()


def _queue(using: str) -> _Queue | None:
    return _QUEUES.__dict__.get(using)


def deferring(using: str) -> bool:
    """Whether writes on ``using`` are being deferred right now."""
    return _queue(using) is not None


def defer(using: str, write: Write) -> None:
    """Queue ``write`` (call only while :func:`deferring`)."""
    queue = _queue(using)
    assert queue is not None, "defer() outside OrmPersistence.atomic()"
    if queue.rows & write.rows:
        flush(using)
    queue.writes.append(write)
    queue.rows |= write.rows
    queue.counters.update(write.counters)


def notify_with(using: str, channel: str) -> bool:
    """Send ``pg_notify(channel)`` in the statement that flushes the queued writes (PostgreSQL delivers it when
    the transaction commits). False when no write is queued: the caller notifies on its own."""
    queue = _queue(using)
    if queue is None or not queue.writes:
        return False
    queue.notify.add(channel)
    return True


def note_locked(using: str, table: str, pk: str, version: int) -> None:
    """Row ``(table, pk)`` was locked in the current deferring transaction at ``version``."""
    queue = _queue(using)
    if queue is not None:
        queue.locked[(table, pk)] = version


def locked_version(using: str, table: str, pk: str) -> int | None:
    """The version row ``(table, pk)`` had when this deferring transaction locked it; ``None`` if it did not."""
    queue = _queue(using)
    return None if queue is None else queue.locked.get((table, pk))


def take_row_update(using: str, table: str, pk: str) -> Write | None:
    """Remove from the queue and return the queued single-row ``UPDATE`` of ``(table, pk)``, for a write to that
    row that carries its assignments (an outbox append whose counter ``UPDATE`` of the run row also sets what
    the run's completion set), so the two leave in one statement. ``None`` when there is none."""
    queue = _queue(using)
    if queue is None or (table, pk) not in queue.rows:
        return None
    for index, write in enumerate(queue.writes):
        update = write.row_update
        if update is not None and (update.table, update.pk) == (table, pk):
            del queue.writes[index]
            queue.rows -= write.rows
            return write
    return None


def advance_counter(using: str, table: str, pk: str, by: int) -> int | None:
    """If the INSERT of row ``(table, pk)`` is still queued, add ``by`` to its counter column (see
    ``Write.counters``) and return the value before; ``None`` when the row is not waiting in the queue (it is
    in the database already, or is not being deferred)."""
    queue = _queue(using)
    entry = None if queue is None else queue.counters.get((table, pk))
    if entry is None:
        return None
    container, key = entry
    before = int(container[key])
    container[key] = before + by
    return before


def flush(using: str) -> None:
    """Execute the queued writes in one statement and check their row counts."""
    queue = _queue(using)
    if queue is None or not queue.writes or queue.flushing:
        return
    writes, queue.writes, queue.rows = queue.writes, [], set()
    channels, queue.notify = sorted(queue.notify), set()
    queue.counters.clear()
    connection = connections[using]
    queue.flushing = True
    try:
        with hot_cursor(connection) as cursor:
            if len(writes) == 1 and writes[0].aux_sql is None and not channels:
                cursor.execute(writes[0].sql, list(writes[0].params))
                counts = [cursor.rowcount]
            else:
                sql, params = combined_writes(writes, notify=channels)
                cursor.execute(sql, params)
                counts = list(cursor.fetchone())[: len(writes)]
    except IntegrityError as exc:
        constraint = getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None)
        for write in writes:
            if write.duplicate is not None and write.duplicate[0] == constraint:
                raise write.duplicate[1] from exc
        raise
    finally:
        queue.flushing = False
    for write, count in zip(writes, counts, strict=True):
        if write.check is not None:
            write.check(int(count))


@contextmanager
def deferred_atomic(using: str) -> Iterator[None]:
    """``transaction.atomic(using)`` in which writes are deferred (PostgreSQL; elsewhere the engine's
    :func:`~.sqlite.write_atomic`)."""
    connection = connections[using]
    if not dialect(connection).deferred_writes or deferring(using):
        with write_atomic(using):
            yield
        return

    def flush_first(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        queue = _queue(using)
        if queue is not None and queue.writes and not queue.flushing:
            flush(using)
        return execute(sql, params, many, context)

    with transaction.atomic(using=using):
        queue = _QUEUES.__dict__[using] = _Queue()
        try:
            with connection.execute_wrapper(flush_first):
                yield
                if _alone(connection, queue):
                    # Nothing was sent in this transaction yet (psycopg sends BEGIN before the first statement),
                    # and its one statement cannot half-succeed: send it in autocommit, where it is a transaction
                    # by itself, without the BEGIN and COMMIT round trips. The atomic block's COMMIT then has
                    # nothing to do (psycopg sends none on an idle connection). A new run's start goes this way.
                    raw = connection.connection
                    raw.autocommit = True
                    try:
                        flush(using)
                    finally:
                        # On a connection the error broke this raises too: the original error stands, and
                        # Django discards the connection.
                        with contextlib.suppress(Exception):
                            raw.autocommit = False
                else:
                    flush(using)
        finally:
            del _QUEUES.__dict__[using]


def _alone(connection: Any, queue: _Queue) -> bool:
    """Whether the queued writes are this outermost transaction's only statement, and all-or-error ones."""
    if len(connection.atomic_blocks) != 1 or connection.needs_rollback or not queue.writes:
        return False
    if not all(write.all_or_error for write in queue.writes):
        return False
    pgconn = getattr(connection.connection, "pgconn", None)  # psycopg 3 (psycopg2 has none: no shortcut)
    if pgconn is None:
        return False
    from psycopg import pq

    return pgconn.transaction_status == pq.TransactionStatus.IDLE
