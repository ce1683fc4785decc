"""A psycopg connection of its own to the test database, beside Django's (PostgreSQL tests)."""

from __future__ import annotations

import psycopg
from django.db import connection


def other_connection(**options) -> psycopg.Connection:
    """A second connection to the database Django's default connection uses, with psycopg ``options``."""
    settings = connection.settings_dict
    return psycopg.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        host=settings["HOST"],
        port=settings["PORT"] or 5432,
        password=settings["PASSWORD"] or None,
        **options,
    )
