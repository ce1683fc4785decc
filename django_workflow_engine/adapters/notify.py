"""The database transport's doorbell on PostgreSQL: ``pg_notify`` when jobs become due, ``LISTEN`` in idle workers.

A job that becomes due now notifies :data:`CHANNEL` inside the transaction that made it due (in the very statement
that carries its deferred writes, so a start stays one statement). PostgreSQL delivers the notification when that
transaction commits, and never for one that rolls back: a worker woken by it always finds the job committed.

An idle worker waits for a notification instead of sleeping ``WORKER_POLL_SECONDS``, and still looks at the job
table at least that often: jobs due later, a notification missed while its connection was replaced, and a
connection pooler in transaction mode (which does not pass ``LISTEN`` through) all fall back to that poll.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.db import connections

from . import statements

CHANNEL = "django_workflow_engine_jobs"
# The longest single wait, so a worker asked to stop notices within this long.
_STOP_CHECK_SECONDS = 0.25


def supported(using: str) -> bool:
    """Whether the database of ``using`` has the doorbell (PostgreSQL)."""
    return connections[using].vendor == "postgresql"


def notify(using: str) -> None:
    """Notify idle workers that jobs are due, when the current transaction commits (at once outside one)."""
    from . import deferred

    if deferred.notify_with(using, CHANNEL):
        return
    with connections[using].cursor() as cursor:
        cursor.execute(statements.notify(), [CHANNEL])


class Listener:
    """``LISTEN`` on one worker thread's connection of ``using``, and waits on it.

    Call :meth:`listen` before each look at the job table and :meth:`wait` after a look found nothing: a
    notification sent in between is not lost (PostgreSQL queues it on the connection). A replaced connection
    (after an error) listens again at the next :meth:`listen`.
    """

    def __init__(self, using: str = "default") -> None:
        self.using = using
        self._listening_on: Any = None

    def listen(self) -> bool:
        """Make sure this thread's connection listens; False where notifications cannot be waited for (not
        PostgreSQL, or psycopg 2)."""
        connection = connections[self.using]
        if connection.vendor != "postgresql":
            return False
        connection.ensure_connection()
        raw = connection.connection
        if raw is self._listening_on:
            return True
        if not hasattr(raw, "notifies"):  # psycopg 2
            return False
        with connection.cursor() as cursor:
            cursor.execute(statements.listen(CHANNEL))
        self._listening_on = raw
        return True

    def discard(self) -> None:
        """Forget the notifications received so far (they arrive during the worker's own statements too, and
        a worker that is never idle would otherwise keep them all)."""
        raw = self._listening_on
        if raw is not None and raw is connections[self.using].connection:
            for _ in raw.notifies(timeout=0):
                pass

    def wait(self, timeout: float, stopping: threading.Event) -> None:
        """Return on a notification (or one received since the last :meth:`discard`), after ``timeout``
        seconds, or soon after ``stopping`` is set."""
        if not self.listen():
            stopping.wait(timeout)
            return
        raw = self._listening_on
        deadline = time.monotonic() + timeout
        while not stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            received = 0
            # stop_after=1 still yields every notification already received: they are all consumed here.
            for _ in raw.notifies(timeout=min(remaining, _STOP_CHECK_SECONDS), stop_after=1):
                received += 1
            if received:
                return
