"""The cursor of the engine's hot-path statements (see :func:`hot_cursor`)."""

from __future__ import annotations

from functools import cache
from typing import Any


def hot_cursor(connection: Any) -> Any:
    """A cursor for the engine's hand-written hot-path statements.

    On PostgreSQL (psycopg 3) it binds parameters on the server, whatever the site's ``server_side_binding``
    option: the values travel apart from the SQL text, so nothing is quoted into it in Python, and psycopg
    prepares a statement it has executed ``prepare_threshold`` times (5 by default), after which PostgreSQL no
    longer parses and plans it (the statements of a stage's transactions repeat for every stage). Set
    ``OPTIONS["prepare_threshold"] = None`` to keep the binding without prepared statements (e.g. behind
    PgBouncer before 1.21 in transaction mode). It is still a Django cursor: execute wrappers, query logging
    and error translation apply. Elsewhere: ``connection.cursor()``."""
    cursor_class = _server_binding_cursor() if connection.vendor == "postgresql" else None
    if cursor_class is None:
        return connection.cursor()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        cursor = cursor_class(connection.connection)
        # As Django's create_cursor does: a cursor timezone only when the connection's differs.
        from django.db.backends.postgresql import base

        loader = connection.connection.adapters.get_loader(base.TIMESTAMPTZ_OID, base.Format.TEXT)
        if connection.timezone != loader.timezone:
            base.register_tzloader(connection.timezone, cursor)
        return connection._prepare_cursor(cursor)


@cache
def _server_binding_cursor() -> Any:
    """Django's server-binding cursor class under psycopg 3; ``None`` under psycopg2."""
    from django.db.backends.postgresql.base import ServerBindingCursor
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return ServerBindingCursor if is_psycopg3 else None
