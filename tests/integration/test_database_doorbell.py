"""The database transport's doorbell on PostgreSQL: jobs that become due notify idle workers when, and only when,
the transaction that made them due commits; a start stays one statement with the notification in it."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from django.db import connection, transaction

from django_workflow_engine import engine
from django_workflow_engine.adapters.notify import CHANNEL, Listener
from tests import flows
from tests.second_connection import other_connection

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _database_transport(settings):
    from django_workflow_engine.testing import registered_workflows

    settings.WORKFLOW_ENGINE = {**getattr(settings, "WORKFLOW_ENGINE", {}), "TRANSPORT": "database"}
    with registered_workflows(flows.triple):
        yield


@pytest.fixture
def listening():
    """A connection of its own that listens on the doorbell's channel."""
    with other_connection(autocommit=True) as other:
        other.execute(f"LISTEN {CHANNEL}")
        yield other


def _received(conn: psycopg.Connection, wait: float = 0.3) -> int:
    return sum(1 for _ in conn.notifies(timeout=wait))


def test_a_start_notifies_in_its_one_statement(listening):
    sent: list[str] = []

    def record(execute, sql, *args):
        sent.append(sql)
        return execute(sql, *args)

    with connection.execute_wrapper(record):
        engine.start("triple", {"n": 1})
    assert len(sent) == 1
    assert "pg_notify" in sent[0]
    assert _received(listening) == 1


def test_nothing_is_delivered_before_commit_nor_for_a_rollback(listening):
    with transaction.atomic():
        engine.start("triple", {"n": 1})
        assert _received(listening) == 0
    assert _received(listening) == 1

    with transaction.atomic():
        engine.start("triple", {"n": 2})
        transaction.set_rollback(True)
    assert _received(listening) == 0


def test_a_start_many_batch_notifies_once(listening):
    engine.start_many("triple", [{"n": i} for i in range(5)])
    assert _received(listening) == 1


def test_the_rq_transport_does_not_notify(listening, settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, "TRANSPORT": "rq"}
    from unittest import mock

    with mock.patch("django_workflow_engine.adapters.rq.ring"):
        engine.start("triple", {"n": 1})
    assert _received(listening) == 0


def test_a_waiting_listener_wakes_on_commit_and_otherwise_times_out():
    listener = Listener()
    stopping = threading.Event()
    assert listener.listen()
    started = time.monotonic()
    listener.wait(0.3, stopping)
    assert time.monotonic() - started >= 0.3  # nothing due: the whole timeout

    def start_soon():
        time.sleep(0.2)
        from django.db import connections

        engine.start("triple", {"n": 1})
        connections.close_all()

    thread = threading.Thread(target=start_soon)
    thread.start()
    started = time.monotonic()
    listener.wait(30, stopping)
    woke_after = time.monotonic() - started
    thread.join()
    assert woke_after < 15, f"the listener slept {woke_after:.1f} s through the notification"


def test_a_stopping_worker_stops_waiting():
    listener = Listener()
    stopping = threading.Event()
    threading.Timer(0.2, stopping.set).start()
    started = time.monotonic()
    listener.wait(30, stopping)
    assert time.monotonic() - started < 15


def test_a_replaced_connection_listens_again(listening):
    listener = Listener()
    assert listener.listen()
    connection.close()
    assert listener.listen()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_listening_channels()")
        assert [row[0] for row in cursor.fetchall()] == [CHANNEL]
