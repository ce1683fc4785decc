"""The cursor of the engine's hot-path statements (see :func:`hot_cursor`)."""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

# Statements seen per connection before they are prepared: a statement is prepared on its second execution.
_SEEN_LIMIT = 512
_NEVER = 2**31 - 1
# Statement texts whose placeholders are kept converted per process (psycopg keeps only short ones).
_CONVERTED_TEXTS = 128


def hot_cursor(connection: Any) -> Any:
    """A cursor for the engine's hand-written hot-path statements (claims, run and stage reads, versioned
    updates, deferred writes, outbox appends).

    On PostgreSQL (psycopg 3) it binds parameters on the server, whatever the site's ``server_side_binding``
    option: the values travel apart from the SQL text, so nothing is quoted into it in Python. With
    ``WORKFLOW_ENGINE["PREPARED_STATEMENTS"]`` (default on) a statement is also prepared on its second
    execution on a connection, so PostgreSQL stops parsing and planning the statements every stage repeats;
    turn it off behind a pooler that cannot keep prepared statements (PgBouncer before 1.21 in transaction
    mode). Only these cursors are affected: the site's own queries keep Django's settings. It is still a
    Django cursor: execute wrappers, query logging and error translation apply. Elsewhere:
    ``connection.cursor()``."""
    classes = _cursor_classes() if connection.vendor == "postgresql" else None
    if classes is None:
        return connection.cursor()
    from ..conf import settings

    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        binding, preparing = classes
        raw = connection.connection
        if settings.PREPARED_STATEMENTS:
            if raw.prepare_threshold is None:
                # psycopg prepares nothing while the threshold is None (Django's default), not even a statement
                # executed with prepare=True. A threshold no statement reaches keeps every other cursor
                # unprepared; these cursors ask for preparation themselves.
                raw.prepare_threshold = _NEVER
            cursor = preparing(raw)
        else:
            cursor = binding(raw)
        # As Django's create_cursor does: a cursor timezone only when the connection's differs.
        base = _postgresql_base()
        loader = connection.connection.adapters.get_loader(base.TIMESTAMPTZ_OID, base.Format.TEXT)
        if connection.timezone != loader.timezone:
            base.register_tzloader(connection.timezone, cursor)
        return connection._prepare_cursor(cursor)


def _postgresql_base() -> Any:
    """Django's PostgreSQL backend module, untyped: its psycopg 3 names are missing from django-stubs."""
    from django.db.backends.postgresql import base

    return base


@cache
def _cursor_classes() -> tuple[type, type] | None:
    """Django's server-binding cursor class and a subclass that prepares repeated statements (psycopg 3);
    ``None`` under psycopg2."""
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    if not is_psycopg3:
        return None
    ServerBindingCursor = _postgresql_base().ServerBindingCursor
    query_class = _query_class()
    if query_class is not None:
        ServerBindingCursor = type("HotBindingCursor", (ServerBindingCursor,), {"_query_cls": query_class})

    class PreparingCursor(ServerBindingCursor):  # type: ignore[misc, valid-type]
        def execute(self, query: Any, params: Any = None, *, prepare: bool | None = None, **kwargs: Any) -> Any:
            if prepare is None:
                seen = self.connection.__dict__.setdefault("_dwe_seen_statements", {})
                if query in seen:
                    prepare = True
                elif len(seen) < _SEEN_LIMIT:
                    seen[query] = True
            result = super().execute(query, params, prepare=prepare, **kwargs)
            if self._query is None:  # type: ignore[has-type]  # psycopg cursor state, untyped base class
                # psycopg keeps no query for a prepared execution, and Django's query log reads it from there.
                self._query = _Executed(query.encode() if isinstance(query, str) else query)
            return result

    return ServerBindingCursor, PreparingCursor


@cache
def _query_class() -> type | None:
    """psycopg's query class, keeping the conversion of every statement text it saw (up to
    ``_CONVERTED_TEXTS``): psycopg rewrites ``%s`` into ``$n`` on each execution and keeps the result only for
    texts under 4,096 characters and 50 parameters, which the one statement of a transaction's deferred writes
    (a start, a batch of eight stages) exceeds. Rewriting such a statement took a fifth of a worker's CPU.
    ``None`` (psycopg's own class stays) if psycopg's internals are not the ones this relies on."""
    try:
        from psycopg import _queries

        split = _queries._query2pg_nocache
        base = _queries.PostgresQuery
        split(b"SELECT %s", "utf-8")
    except Exception:  # another psycopg: no cache, nothing else changes
        return None
    converted = lru_cache(maxsize=_CONVERTED_TEXTS)(split)

    class HotQuery(base):  # type: ignore[misc, valid-type]
        conversions = converted

        def convert(self, query: Any, vars: Any) -> None:
            if vars is None or not isinstance(query, str | bytes):
                return super().convert(query, vars)
            if isinstance(query, str):
                query = query.encode(self._tx.encoding)
            self.query, self._want_formats, self._order, self._parts = converted(query, self._tx.encoding)
            self.dump(vars)
            return None

    return HotQuery


class _Executed:
    """Stands in for psycopg's query object after a prepared execution (``.query``: the SQL sent)."""

    __slots__ = ("query",)

    def __init__(self, query: bytes):
        self.query = query
