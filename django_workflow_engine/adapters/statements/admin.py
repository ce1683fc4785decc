"""The admin's statements for large tables."""

from __future__ import annotations

from typing import Any

from .core import q

# -- the admin ------------------------------------------------------------------------------------------------


def estimated_count(db_table: str, above: int) -> tuple[str, list[Any]]:
    """estimated_count -- The planner's row estimate of a table above ``above`` rows, else its exact count.

    One statement (PostgreSQL): the uncorrelated ``COUNT(*)`` sub-select (an InitPlan) runs only when the CASE
    reaches it, i.e. only for tables the planner believes are small. The admin's paginator."""
    return (
        "SELECT CASE WHEN (SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)) > %s "
        "THEN (SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)) "
        f"ELSE (SELECT COUNT(*) FROM {q(db_table)}) END",
        [db_table, above, db_table],
    )


def distinct_model_ids(db_table: str, limit: int) -> tuple[str, list[Any]]:
    """distinct_model_ids -- Distinct AI model ids by a loose index scan, at most ``limit``.

    One recursive query that jumps from one model id to the next through the ``(model_id, created_at)`` index,
    instead of ``SELECT DISTINCT`` reading every call. The admin's model filter of AI calls."""
    t = q(db_table)
    return (
        f"WITH RECURSIVE m(model_id) AS ("
        f"  SELECT * FROM (SELECT model_id FROM {t} ORDER BY model_id LIMIT 1) AS first"
        f"  UNION ALL"
        f"  SELECT (SELECT t.model_id FROM {t} t WHERE t.model_id > m.model_id ORDER BY t.model_id LIMIT 1)"
        f"  FROM m WHERE m.model_id IS NOT NULL"
        f") SELECT model_id FROM m WHERE model_id IS NOT NULL LIMIT %s",
        [limit],
    )
