"""SQLite with several processes: the engine's own writes take the write lock up front and wait out a busy file.

SQLite has one writer at a time. Django begins a transaction with a plain (deferred) ``BEGIN`` unless the site
sets ``OPTIONS["transaction_mode"] = "IMMEDIATE"``; a deferred transaction that reads and then writes while
another connection holds the write lock fails at once with ``database is locked`` (SQLite does not even wait its
busy timeout: waiting could deadlock). Two workers and a maintenance process meet that within seconds.

So, on SQLite, every statement the engine's adapters run goes through :func:`busy_guard` (an execute wrapper,
installed only while an adapter method runs, so the site's own queries are untouched):

* a ``BEGIN`` the engine starts becomes ``BEGIN IMMEDIATE``: the write lock is taken before the first read, and
  waiting for it is safe, so the connection's busy timeout applies;
* a statement outside a transaction (a ``BEGIN``, or an autocommit statement such as the job claim's
  ``UPDATE ... RETURNING``) that still meets ``SQLITE_BUSY`` after the busy timeout is retried with a short
  backoff, for up to :data:`BUSY_RETRY_SECONDS` in all. Such a statement did nothing, so running it again is
  safe. Inside a transaction nothing is retried (its earlier statements would be lost): the error propagates,
  the transaction rolls back, and a worker gives the job back at once (``hosts.worker``).

Neither changes anything on PostgreSQL. :func:`use_wal` switches the database file to write-ahead logging, with
which readers never block the writer (and the writer's commit never waits for readers).
"""

from __future__ import annotations

import functools
import inspect
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from django.db import connections, transaction
from django.db.utils import OperationalError

from .statements import BEGIN_IMMEDIATE, DEFERRED_BEGINS, JOURNAL_MODE, JOURNAL_MODE_WAL

logger = logging.getLogger("django_workflow_engine.sqlite")

# The longest a statement outside a transaction keeps retrying a busy database, on top of each attempt's own
# busy timeout (the connection's ``timeout`` option, 5 s by default).
BUSY_RETRY_SECONDS = 60.0
_BUSY_CODES = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED (primary result codes)
_BUSY_MESSAGES = ("database is locked", "database table is locked", "database schema is locked")

F = TypeVar("F", bound=Callable[..., Any])


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's ``SQLITE_BUSY``/``SQLITE_LOCKED`` ("database is locked"), as raised by Django
    (an ``OperationalError`` caused by ``sqlite3.OperationalError``) or by ``sqlite3`` itself."""
    for error in (exc, exc.__cause__):
        code = getattr(error, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF in _BUSY_CODES
    return isinstance(exc, OperationalError) and any(m in str(exc) for m in _BUSY_MESSAGES)


def _guard(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    connection = context["connection"]
    if not connection.autocommit or connection.in_atomic_block:
        return execute(sql, params, many, context)  # inside a transaction: its BEGIN already took the lock
    if isinstance(sql, str) and sql.strip().upper() in DEFERRED_BEGINS:
        sql = BEGIN_IMMEDIATE
    deadline = None
    delay = 0.02
    while True:
        try:
            return execute(sql, params, many, context)
        except OperationalError as exc:
            if not is_busy(exc):
                raise
            now = time.monotonic()
            deadline = deadline or now + BUSY_RETRY_SECONDS
            if now >= deadline:
                raise
            time.sleep(min(delay * (0.5 + random.random()), deadline - now))
            delay = min(delay * 2, 1.0)


@contextmanager
def busy_guard(using: str) -> Iterator[None]:
    """On SQLite, while the block runs: the engine's ``BEGIN`` takes the write lock up front, and a busy
    database is waited out outside transactions (see the module docstring). Nested uses install it once."""
    connection = connections[using]
    wrappers = connection.execute_wrappers
    if connection.vendor != "sqlite" or _guard in wrappers:
        yield
        return
    wrappers.append(_guard)
    try:
        yield
    finally:
        wrappers.remove(_guard)


@contextmanager
def write_atomic(using: str, *, savepoint: bool = True) -> Iterator[None]:
    """``transaction.atomic(using)`` for the engine's own writes: on SQLite an outermost block begins with
    ``BEGIN IMMEDIATE`` (retried while the database is busy); nested in the site's transaction it is a
    savepoint of that transaction, whose mode is the site's."""
    with busy_guard(using), transaction.atomic(using=using, savepoint=savepoint):
        yield


_SQLITE_ALIASES: dict[str, bool] = {}


def _is_sqlite(using: str) -> bool:
    # An alias's backend is fixed when the process starts; looking the connection up costs ~2 us per call.
    known = _SQLITE_ALIASES.get(using)
    if known is None:
        known = _SQLITE_ALIASES[using] = connections[using].vendor == "sqlite"
    return known


def guarded(method: F) -> F:
    """Run an adapter method (of an object with a ``using`` alias) under :func:`busy_guard`."""

    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_sqlite(self.using):
            return method(self, *args, **kwargs)
        connection = connections[self.using]
        wrappers = connection.execute_wrappers
        if _guard in wrappers:
            return method(self, *args, **kwargs)
        wrappers.append(_guard)
        try:
            return method(self, *args, **kwargs)
        finally:
            wrappers.remove(_guard)

    return run  # type: ignore[return-value]


def guard_public_methods(cls: type) -> type:
    """Class decorator: every public method of an adapter runs under :func:`busy_guard`."""
    for name, value in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(value):
            setattr(cls, name, guarded(value))
    return cls


def use_wal(using: str = "default") -> str | None:
    """Switch a SQLite database file to write-ahead logging (``PRAGMA journal_mode=WAL``, which persists in the
    file) unless the site's ``init_command`` chooses a journal mode itself. Returns the journal mode now in use,
    or ``None`` when there is nothing to do (not SQLite, an in-memory database, inside a transaction) or the
    switch failed (logged)."""
    connection = connections[using]
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        return None
    if cast(Any, connection).is_in_memory_db():  # a method of the SQLite backend only
        return None
    if "journal_mode" in str(connection.settings_dict.get("OPTIONS", {}).get("init_command", "")).lower():
        return None
    try:
        with busy_guard(using), connection.cursor() as cursor:
            cursor.execute(JOURNAL_MODE)
            mode = str(cursor.fetchone()[0]).lower()
            if mode != "wal":
                cursor.execute(JOURNAL_MODE_WAL)
                mode = str(cursor.fetchone()[0]).lower()
    except OperationalError:
        logger.warning("could not switch the SQLite database to WAL mode", exc_info=True)
        return None
    return mode
