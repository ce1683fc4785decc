"""The cursor of the engine's hot statements: server-side binding and, on PostgreSQL, prepared statements
limited to the engine's own statements."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings

from django_workflow_engine import engine
from django_workflow_engine.adapters.cursors import hot_cursor
from django_workflow_engine.checks import check_settings

pytestmark = pytest.mark.django_db(transaction=True)

RUN_BY_ID = 'SELECT "id" FROM "django_workflow_engine_workflowrun" WHERE "id" = %s'


def _prepared() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def _engine_settings(**extra):
    return {**django_settings.WORKFLOW_ENGINE, **extra}


@pytest.mark.postgres
def test_a_repeated_hot_statement_is_prepared_and_the_sites_queries_are_not():
    connection.close()  # a fresh connection: nothing prepared yet
    with hot_cursor(connection) as cursor:
        cursor.execute(RUN_BY_ID, ["nope"])
    assert _prepared() == []  # once: not prepared
    for _ in range(2):
        with hot_cursor(connection) as cursor:
            cursor.execute(RUN_BY_ID, ["nope"])
            assert cursor.fetchall() == []
    site_sql = 'SELECT "id" FROM "django_workflow_engine_workflowstage" WHERE "id" = %s'
    for _ in range(10):
        with connection.cursor() as cursor:
            cursor.execute(site_sql, ["nope"])
    assert _prepared() == [RUN_BY_ID.replace("%s", "$1")]


@pytest.mark.postgres
def test_prepared_statements_can_be_turned_off():
    connection.close()
    with override_settings(WORKFLOW_ENGINE=_engine_settings(PREPARED_STATEMENTS=False)):
        for _ in range(5):
            with hot_cursor(connection) as cursor:
                cursor.execute(RUN_BY_ID, ["nope"])
    assert _prepared() == []


@pytest.mark.postgres
def test_hot_statements_are_still_django_queries_and_a_run_completes_with_them():
    connection.close()
    run = engine.start("triple", {"n": 4, "sleep": 0})
    with CaptureQueriesContext(connection) as captured:
        engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert run.output == {"sum": 8}
    # the claim, run and stage reads went through hot cursors, and CaptureQueriesContext saw them
    assert all(q["sql"] for q in captured.captured_queries)  # prepared executions are logged with their SQL
    assert any(q["sql"].startswith('SELECT "id", "created_at"') for q in captured.captured_queries)
    assert any(stmt.startswith("SELECT") and "FOR UPDATE" in stmt for stmt in _prepared())


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_a_non_boolean_prepared_statements_setting_is_reported(value):
    with override_settings(WORKFLOW_ENGINE=_engine_settings(PREPARED_STATEMENTS=value)):
        errors = check_settings()
    assert any("PREPARED_STATEMENTS" in e.msg for e in errors)


def _generic_plan(sql: str, params: list) -> str:
    """The plan PostgreSQL keeps for ``sql`` once it is prepared and switches to a generic plan, made here while
    the engine's tables are empty (as on a fresh database whose tables were never analyzed)."""
    numbered = sql
    for n in range(1, len(params) + 1):
        numbered = numbered.replace("%s", f"${n}", 1)
    with connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        try:
            cursor.execute(f"PREPARE dwe_plan_probe AS {numbered}")
            args = ", ".join(["%s"] * len(params))
            cursor.execute(f"EXPLAIN EXECUTE dwe_plan_probe({args})", params)
            return "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("DEALLOCATE ALL")
            cursor.execute("RESET plan_cache_mode")


@pytest.mark.postgres
def test_generic_plans_of_the_per_stage_statements_use_their_index_not_a_whole_index_or_table_scan():
    """A prepared hot statement whose WHERE gives a partial index's predicate as a parameter (``status =
    'PENDING'``) got a generic plan scanning and sorting the whole job table on every dequeue; one that repeats
    the predicate (``superseded_at IS NULL``) with no condition on that index's columns, a generic plan walking
    that whole index on every stage outcome: both grew with the tables."""
    from django.utils import timezone

    from django_workflow_engine.adapters.statements import versioned_update
    from django_workflow_engine.models import WorkflowStage

    statements: list[tuple[str, list]] = []

    def keep(execute, sql, params, many, context):
        statements.append((sql, list(params or [])))
        return execute(sql, params, many, context)

    connection.close()
    with connection.execute_wrapper(keep):
        assert engine.kernel.jobs.dequeue("probe", timezone.now()) is None
    dequeue, params = next((sql, p) for sql, p in statements if "ORDER BY" in sql)
    plan = _generic_plan(dequeue, params)
    assert "dwe_job_dequeue_idx" in plan, plan
    assert "Seq Scan" not in plan, plan

    update = versioned_update(connection, WorkflowStage, "stage-id", {"status": "RUNNING"}, None, True)
    sql, params = update.sql, update.params
    plan = _generic_plan(sql, params)
    assert "Index Cond: ((id)::text = $" in plan, plan
    assert "dwe_stage_run_stage_uniq" not in plan, plan
