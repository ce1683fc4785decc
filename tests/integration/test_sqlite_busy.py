"""SQLite shared by several processes: the engine's transactions take the write lock up front, its statements
outside a transaction wait out a busy database, a job whose execution meets a busy database is given back at
once, and system check W001 names what the site's own transactions still need.

A second ``sqlite3`` connection holding the write lock stands in for another process."""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import pytest
from django.db import connection, connections, transaction
from django.db.backends.sqlite3.base import SQLiteCursorWrapper
from django.db.utils import OperationalError

from django_workflow_engine import engine
from django_workflow_engine.adapters import sqlite as guard
from django_workflow_engine.checks import SQLITE_OPTIONS, SQLITE_OPTIONS_SNIPPET, check_sqlite
from django_workflow_engine.hosts.jobs import execute_claimed
from django_workflow_engine.models import WorkflowJob, WorkflowRun

sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite locking")


@pytest.fixture
def no_busy_timeout():
    """The Django connection gives up on a lock at once (SQLite's own busy timeout off): only the engine's
    retries can wait."""
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        (before,) = cursor.fetchone()
        cursor.execute("PRAGMA busy_timeout = 0")
    yield
    with connection.cursor() as cursor:
        cursor.execute(f"PRAGMA busy_timeout = {int(before)}")


def hold_write_lock(seconds: float) -> threading.Event:
    """Take the database's write lock from another connection for ``seconds``; returns an event set once held."""
    held = threading.Event()

    def hold() -> None:
        other = sqlite3.connect(connection.settings_dict["NAME"], timeout=10, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(seconds)
        other.execute("COMMIT")
        other.close()

    threading.Thread(target=hold, daemon=True).start()
    assert held.wait(10)
    return held


@sqlite_only
@pytest.mark.django_db(transaction=True)
def test_engine_transactions_begin_immediate_and_the_sites_keep_their_mode(monkeypatch):
    wrapper = connections["default"]
    wrapper.ensure_connection()
    monkeypatch.setattr(wrapper, "transaction_mode", None)  # as with Django's default OPTIONS
    sent = []
    real_execute = SQLiteCursorWrapper.execute

    def execute(self, query, params=None):  # what reaches sqlite3, after every execute wrapper
        sent.append(query)
        return real_execute(self, query, params)

    monkeypatch.setattr(SQLiteCursorWrapper, "execute", execute)
    engine.start("triple", {"n": 1})
    engine.run_until_idle(max_jobs=1)
    engine_begins = [q for q in sent if q.startswith("BEGIN")]
    del sent[:]
    with transaction.atomic():
        WorkflowRun.objects.update(priority=3)

    assert len(engine_begins) >= 3
    assert set(engine_begins) == {"BEGIN IMMEDIATE"}
    assert [q for q in sent if q.startswith("BEGIN")] == ["BEGIN"]  # the site's own transaction


@sqlite_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_busy_timeout")
def test_statements_outside_a_transaction_wait_out_a_busy_database():
    run = engine.start("triple", {"n": 1})
    hold_write_lock(0.5)
    with pytest.raises(OperationalError, match="locked"):  # the site's statement: no retry
        WorkflowRun.objects.filter(pk=run.id).update(priority=2)
    started = time.monotonic()
    job = engine.kernel.jobs.dequeue("w1", engine.kernel.clock.now())  # an autocommit UPDATE ... RETURNING
    assert job is not None
    assert job.run_id == run.id
    assert time.monotonic() - started > 0.2  # it waited for the lock
    hold_write_lock(0.5)
    run2 = engine.start("triple", {"n": 2})  # a transaction: its BEGIN IMMEDIATE is retried
    assert WorkflowRun.objects.filter(pk=run2.id).exists()


@sqlite_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_busy_timeout")
def test_retries_stop_after_the_bound(monkeypatch):
    monkeypatch.setattr(guard, "BUSY_RETRY_SECONDS", 0.3)
    hold_write_lock(3)
    started = time.monotonic()
    with pytest.raises(OperationalError, match="locked"):
        engine.start("triple", {"n": 1})
    assert time.monotonic() - started < 2


@pytest.mark.django_db(transaction=True)
def test_a_job_whose_outcome_meets_a_busy_database_is_released_at_once_without_counting_the_attempt(monkeypatch):
    run = engine.start("triple", {"n": 1})
    kernel = engine.kernel
    job = kernel.jobs.dequeue("w1", kernel.clock.now())
    assert job is not None
    assert job.attempt == 1
    persistence = type(kernel.persistence)
    real_lock_run = persistence.lock_run
    calls = []

    def busy_at_the_outcome(self, run_id, known=None):  # phase 1 passes; the outcome transaction meets a lock
        calls.append(run_id)
        if len(calls) == 2:
            raise OperationalError("database is locked")
        return real_lock_run(self, run_id, known)

    monkeypatch.setattr(persistence, "lock_run", busy_at_the_outcome)
    outcome = execute_claimed(kernel, job, "w1", eager=False)

    assert outcome.outcome == "released"
    row = WorkflowJob.objects.get(pk=job.id)
    assert (row.status, row.attempt, row.worker_id) == ("PENDING", 0, None)
    assert row.available_at <= kernel.clock.now()
    again = kernel.jobs.dequeue("w2", kernel.clock.now())
    assert (again.id, again.attempt) == (job.id, 1)
    assert execute_claimed(kernel, again, "w2", eager=False).outcome == "completed"
    engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "COMPLETED"


@pytest.mark.django_db(transaction=True)
def test_run_until_idle_gives_back_the_job_a_busy_database_interrupted(monkeypatch):
    run = engine.start("triple", {"n": 1})
    persistence = type(engine.kernel.persistence)
    real_lock_run = persistence.lock_run
    calls = []

    def busy_at_the_outcome(self, run_id, known=None):
        calls.append(run_id)
        if len(calls) == 2:
            raise OperationalError("database is locked")
        return real_lock_run(self, run_id, known)

    monkeypatch.setattr(persistence, "lock_run", busy_at_the_outcome)
    with pytest.raises(OperationalError, match="locked"):
        engine.run_until_idle()
    job = WorkflowJob.objects.get(run_id=run.id)
    assert (job.status, job.attempt, job.worker_id) == ("PENDING", 0, None)
    monkeypatch.setattr(persistence, "lock_run", real_lock_run)
    engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert set(WorkflowJob.objects.filter(run_id=run.id).values_list("attempt", flat=True)) == {1}


@pytest.mark.django_db(transaction=True)
def test_other_database_errors_still_propagate(monkeypatch):
    engine.start("triple", {"n": 1})
    kernel = engine.kernel
    job = kernel.jobs.dequeue("w1", kernel.clock.now())

    def broken(self, run_id):
        raise OperationalError("disk I/O error")

    monkeypatch.setattr(type(kernel.persistence), "lock_run", broken)
    with pytest.raises(OperationalError, match="disk I/O"):
        execute_claimed(kernel, job, "w1", eager=False)
    assert WorkflowJob.objects.get(pk=job.id).status == "RUNNING"  # left to its lease, as before


@sqlite_only
@pytest.mark.django_db(transaction=True)
def test_use_wal_switches_the_file_unless_the_site_chose_a_journal_mode(monkeypatch):
    assert guard.use_wal() == "wal"
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
    options = {**connection.settings_dict.get("OPTIONS", {}), "init_command": "PRAGMA journal_mode=DELETE"}
    monkeypatch.setitem(connection.settings_dict, "OPTIONS", options)
    assert guard.use_wal() is None


@sqlite_only
@pytest.mark.parametrize(
    ("options", "missing"),
    [
        ({}, ['transaction_mode="IMMEDIATE" or a busy timeout']),
        ({"timeout": 20}, ['transaction_mode="IMMEDIATE":']),
        ({"transaction_mode": "immediate"}, ["a busy timeout"]),
        (SQLITE_OPTIONS, None),
        ({"transaction_mode": "IMMEDIATE", "timeout": 5}, None),
    ],
)
def test_w001_warns_about_what_the_sites_transactions_need(monkeypatch, options, missing):
    monkeypatch.setitem(connection.settings_dict, "OPTIONS", options)
    messages = check_sqlite()
    if missing is None:
        assert messages == []
        return
    [warning] = messages
    assert warning.id == "django_workflow_engine.W001"
    assert all(m in warning.msg for m in missing)
    assert SQLITE_OPTIONS_SNIPPET in warning.hint
    pasted: dict = {"DATABASES": {"default": {}}}
    exec(SQLITE_OPTIONS_SNIPPET, pasted)  # noqa: S102 (the hint's snippet is valid Python, as pasted)
    assert pasted["DATABASES"]["default"]["OPTIONS"] == SQLITE_OPTIONS
    assert json.loads(SQLITE_OPTIONS_SNIPPET.split(" = ", 1)[1]) == SQLITE_OPTIONS


@pytest.mark.skipif(connection.vendor == "sqlite", reason="PostgreSQL pass")
def test_w001_is_silent_off_sqlite():
    assert check_sqlite() == []
