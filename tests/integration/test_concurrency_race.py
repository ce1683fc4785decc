"""Concurrent starts of one key on PostgreSQL: the per-key lock admits exactly ``limit`` runs."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from django_workflow_engine import engine
from django_workflow_engine.models import WorkflowRun

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_sixteen_simultaneous_starts_admit_exactly_the_limit():
    barrier = threading.Barrier(16)
    errors: list[BaseException] = []

    def start(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            engine.start("whole-two", {"customer": f"c{i}"})
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=start, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert WorkflowRun.objects.filter(workflow_id="whole-two", status="RUNNING").count() == 2
    assert WorkflowRun.objects.filter(workflow_id="whole-two", status="PENDING").count() == 14
