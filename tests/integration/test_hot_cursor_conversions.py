"""The engine's hot cursors convert a long statement's placeholders once per process, not on every execution
(psycopg keeps only statements under 4,096 characters and 50 parameters), and still bind its values."""

from __future__ import annotations

import pytest
from django.db import connection

from django_workflow_engine.adapters.cursors import _query_class, hot_cursor

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def test_a_long_statement_is_converted_once_and_binds_every_value():
    query_class = _query_class()
    assert query_class is not None, "psycopg's internals changed: the conversion cache is off"
    # 120 parameters and well over 4,096 characters: psycopg itself would convert this text on every execution.
    sql = "SELECT " + ", ".join(f"%s::int AS value_number_{i:04d}_with_a_long_name" for i in range(120))
    assert len(sql) > 4096
    before = query_class.conversions.cache_info()
    for round_no in range(3):
        values = [round_no * 1000 + i for i in range(120)]
        with hot_cursor(connection) as cursor:
            cursor.execute(sql, values)
            assert list(cursor.fetchone()) == values
    after = query_class.conversions.cache_info()
    assert after.misses - before.misses == 1
    assert after.hits - before.hits == 2


def test_statements_without_parameters_are_left_to_psycopg():
    with hot_cursor(connection) as cursor:
        cursor.execute("SELECT 1 AS one")
        assert cursor.fetchone() == (1,)
