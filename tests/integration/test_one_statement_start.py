"""A start that is one all-or-error statement goes to PostgreSQL in autocommit: one round trip, no BEGIN and no
COMMIT on the wire (what Django logs for the atomic block is not what psycopg sends: libpq's trace is)."""

from __future__ import annotations

import tempfile

import pytest
from django.db import connection, transaction

from django_workflow_engine import engine
from django_workflow_engine.core.errors import WorkflowEngineError
from django_workflow_engine.models import OutboxEvent, WorkflowJob, WorkflowRun, WorkflowStage
from tests import flows
from tests.second_connection import other_connection

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _workflows(settings):
    from django_workflow_engine.testing import registered_workflows

    with registered_workflows(flows.triple):
        yield


def _wire(call) -> list[str]:
    """The frontend messages libpq sent while ``call`` ran (``Query``/``Parse``/``Bind``... with their text)."""
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    with tempfile.TemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        try:
            call()
        finally:
            pgconn.untrace()
        trace.seek(0)
        return [line for line in trace.read().splitlines() if "\tF\t" in line]


def _committed_runs() -> int:
    """Rows another connection sees: only what was committed."""
    with other_connection() as other:
        return other.execute(f'SELECT count(*) FROM "{WorkflowRun._meta.db_table}"').fetchone()[0]


def test_a_start_is_one_statement_in_autocommit():
    engine.start("triple", {"n": 0})  # warm: settings, registry, prepared statements
    started = []
    sent = _wire(lambda: started.append(engine.start("triple", {"n": 1})))

    assert not [line for line in sent if "BEGIN" in line or "COMMIT" in line], sent
    # One statement (prepared, or being prepared: Parse, then Bind/Execute) and no simple Query at all.
    assert sum(1 for line in sent if "\tExecute\t" in line) == 1, sent
    assert not [line for line in sent if "\tQuery\t" in line], sent
    assert _committed_runs() == 2
    run = started[0]
    assert WorkflowStage.objects.filter(run_id=run.id).count() == 1
    assert WorkflowJob.objects.filter(run_id=run.id, status="PENDING").count() == 1
    assert OutboxEvent.objects.filter(run_id=run.id).count() >= 1


def test_a_failing_one_statement_start_leaves_nothing_and_the_connection_usable(monkeypatch):
    from django_workflow_engine.kernel.handlers import run_create

    run = engine.start("triple", {"n": 1})
    monkeypatch.setattr(run_create, "new_id", lambda: run.id)  # the next run's id exists already
    with pytest.raises(WorkflowEngineError, match="already exists"):
        engine.start("triple", {"n": 2})
    monkeypatch.undo()

    assert _committed_runs() == 1
    assert WorkflowStage.objects.count() == 1
    assert engine.start("triple", {"n": 3}).status == "RUNNING"  # the connection is not left in a failed state


def test_a_start_inside_the_callers_transaction_rolls_back_with_it():
    class Undo(Exception):
        pass

    def start_then_undo():
        with transaction.atomic():
            engine.start("triple", {"n": 1})
            raise Undo

    def traced():
        with pytest.raises(Undo):
            start_then_undo()

    sent = _wire(traced)

    assert any("BEGIN" in line for line in sent)
    assert _committed_runs() == 0
    assert WorkflowRun.objects.count() == 0


def test_a_start_on_a_connection_the_server_dropped_raises_the_database_error():
    from django.db import OperationalError

    engine.start("triple", {"n": 0})
    pid = connection.connection.info.backend_pid
    with other_connection(autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])

    # What hosts treat as a lost database (and retry), not an error of the engine's own making.
    with pytest.raises(OperationalError):
        engine.start("triple", {"n": 1})
    connection.close()
    assert engine.start("triple", {"n": 2}).status == "RUNNING"
    assert _committed_runs() == 2
