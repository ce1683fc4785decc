"""Run concurrency limits through the public API (SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools

import pytest

from django_workflow_engine import WorkflowBuilder, engine
from django_workflow_engine.errors import ConcurrencyKeyError, WorkflowDefinitionError
from django_workflow_engine.models import WorkflowJob, WorkflowRun
from tests.flows_limits import Order, handle

pytestmark = pytest.mark.django_db


def _statuses(runs):
    return [WorkflowRun.objects.get(pk=r.id).status for r in runs]


def test_one_run_per_key_others_wait_pending_then_start_fifo():
    runs = [engine.start("per-customer", {"customer": "acme", "n": i}) for i in range(4)]
    other = engine.start("per-customer", {"customer": "globex", "n": 9})
    assert _statuses(runs) == ["RUNNING", "PENDING", "PENDING", "PENDING"]
    assert WorkflowRun.objects.get(pk=other.id).status == "RUNNING"
    assert set(WorkflowRun.objects.waiting_for_slot().values_list("id", flat=True)) == {r.id for r in runs[1:]}
    assert not WorkflowJob.objects.filter(run_id__in=[r.id for r in runs[1:]]).exists()

    engine.run_until_idle()

    done = sorted(WorkflowRun.objects.filter(pk__in=[r.id for r in runs]), key=lambda r: r.started_at)
    assert [r.status for r in done] == ["COMPLETED"] * 4
    assert [r.id for r in done] == [r.id for r in runs]  # FIFO
    for earlier, later in itertools.pairwise(done):
        assert earlier.completed_at <= later.started_at  # never two at once


def test_a_run_whose_key_is_none_is_not_limited():
    first = engine.start("per-customer", {"customer": "acme"})
    free = [engine.start("per-customer", {"customer": ""}) for _ in range(3)]
    assert WorkflowRun.objects.get(pk=first.id).status == "RUNNING"
    assert _statuses(free) == ["RUNNING"] * 3
    assert WorkflowRun.objects.filter(pk__in=[r.id for r in free], concurrency_key=None).count() == 3


def test_whole_workflow_limit_without_key_function():
    runs = [engine.start("whole-two", {"customer": c}) for c in "abcde"]
    assert _statuses(runs) == ["RUNNING", "RUNNING", "PENDING", "PENDING", "PENDING"]
    engine.run_until_idle()
    assert _statuses(runs) == ["COMPLETED"] * 5


def test_priority_then_fifo_when_a_slot_frees():
    first = engine.start("per-customer", {"customer": "acme", "n": 0})
    low = engine.start("per-customer", {"customer": "acme", "n": 1}, priority=1)
    high = engine.start("per-customer", {"customer": "acme", "n": 2}, priority=9)
    engine.cancel(first.id)  # releasing the slot starts the next waiting run in the same transaction
    assert _statuses([low, high]) == ["PENDING", "RUNNING"]
    assert WorkflowJob.objects.filter(run_id=high.id, status="PENDING").count() == 1


def test_cancelling_a_waiting_run_frees_nothing_and_it_never_starts():
    first = engine.start("per-customer", {"customer": "acme"})
    waiting = engine.start("per-customer", {"customer": "acme"})
    engine.cancel(waiting.id)
    engine.run_until_idle()
    assert _statuses([first, waiting]) == ["COMPLETED", "CANCELLED"]


@pytest.mark.parametrize(
    ("customer", "message"),
    [
        ("boom", "concurrency_key of workflow 'per-customer' raised ValueError: no customer registry"),
        ("bad-type", "concurrency_key of workflow 'per-customer' returned int 42; it must return a string or None"),
    ],
)
def test_a_bad_key_function_refuses_the_start_and_writes_nothing(customer, message):
    with pytest.raises(ConcurrencyKeyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        engine.start("per-customer", {"customer": customer})
    assert not WorkflowRun.objects.exists()
    assert not WorkflowJob.objects.exists()


def test_create_keeps_a_limited_run_waiting_until_maintenance_admits_it():
    run = engine.create("per-customer", {"customer": "acme"})
    assert WorkflowRun.objects.get(pk=run.id).concurrency_key == "acme"
    engine.run_until_idle()
    assert WorkflowRun.objects.get(pk=run.id).status == "COMPLETED"


@pytest.mark.parametrize("limit", [0, -1, 1.5, "2", True])
def test_bad_limits_are_refused_at_definition(limit):
    with pytest.raises(WorkflowDefinitionError, match="Workflow 'w': max_concurrent_runs must be a positive integer"):
        WorkflowBuilder("w", "W", input=Order, max_concurrent_runs=limit)


def test_a_key_that_is_not_callable_or_has_no_limit_is_refused():
    with pytest.raises(WorkflowDefinitionError, match="concurrency_key must be a function"):
        WorkflowBuilder("w", "W", input=Order, max_concurrent_runs=1, concurrency_key="customer")
    with pytest.raises(WorkflowDefinitionError, match="concurrency_key needs max_concurrent_runs"):
        WorkflowBuilder("w", "W", input=Order, concurrency_key=lambda d: d["customer"])
    assert WorkflowBuilder("w", "W", input=Order).pipe(handle).build().max_concurrent_runs is None


def test_a_rerun_asks_for_a_slot_and_is_refused_unchanged_when_none_is_free():
    from django_workflow_engine.errors import ConcurrencyLimitReached

    done = engine.start("per-customer", {"customer": "acme", "n": 1})
    engine.run_until_idle()
    holder = engine.start("per-customer", {"customer": "acme", "n": 2})
    before = WorkflowRun.objects.get(pk=done.id)
    with pytest.raises(ConcurrencyLimitReached, match="allows 1 running run\\(s\\) for key 'acme' and none is free"):
        engine.rerun_from(done.id, "handle")
    after = WorkflowRun.objects.get(pk=done.id)
    assert (after.status, after.version, after.completed_at) == ("COMPLETED", before.version, before.completed_at)
    assert not WorkflowJob.objects.filter(run_id=done.id, status="PENDING").exists()

    engine.run_until_idle()  # the holder finishes: the slot is free again
    assert WorkflowRun.objects.get(pk=holder.id).status == "COMPLETED"
    engine.rerun_from(done.id, "handle")
    assert WorkflowRun.objects.get(pk=done.id).status == "RUNNING"
    engine.run_until_idle()
    assert WorkflowRun.objects.get(pk=done.id).status == "COMPLETED"
