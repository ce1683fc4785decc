"""Real concurrency against PostgreSQL: claims, dequeues, outbox sequences and idempotency keys under 8 threads,
each with its own database connection and committed transactions."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection

from django_workflow_engine.adapters.job_queue import OrmJobQueue
from django_workflow_engine.adapters.persistence import OrmPersistence
from django_workflow_engine.kernel.records import NewJob, RunRecord, Status
from django_workflow_engine.models import OutboxEvent, WorkflowJob, WorkflowRun

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 8
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def in_threads(work: Callable[[int], Any], threads: int = THREADS) -> list[Any]:
    """Run ``work(i)`` in ``threads`` threads started together; return their results, re-raising any error."""
    barrier = threading.Barrier(threads)
    results: list[Any] = [None] * threads
    errors: list[BaseException] = []

    def target(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    pool = [threading.Thread(target=target, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=120)
    if errors:
        raise errors[0]
    return results


def create_runs(persistence: OrmPersistence, count: int) -> list[str]:
    ids = [f"run-{i:03d}" for i in range(count)]
    for i, run_id in enumerate(ids):
        persistence.create_run(
            RunRecord(id=run_id, workflow_id="wf", workflow_name="W", workflow_type="wf", input={}, priority=i % 3), NOW
        )
    return ids


def test_claim_next_pending_run_claims_each_run_once():
    persistence = OrmPersistence()
    ids = create_runs(persistence, 50)

    def claim_all(_: int) -> list[str]:
        mine = []
        while (run := persistence.claim_next_pending_run(NOW)) is not None:
            mine.append(run.id)
        return mine

    claimed = [run_id for batch in in_threads(claim_all) for run_id in batch]
    assert Counter(claimed) == Counter(ids)
    assert not WorkflowRun.objects.filter(status=Status.PENDING).exists()
    assert set(WorkflowRun.objects.values_list("version", flat=True)) == {2}


def test_dequeue_hands_each_job_out_once():
    persistence, jobs = OrmPersistence(), OrmJobQueue()
    create_runs(persistence, 1)
    ids = jobs.enqueue(
        [NewJob(run_id="run-000", workflow_id="wf", stage_id=f"s{i}", priority=i % 4) for i in range(100)], NOW
    )

    def drain(worker: int) -> list[str]:
        mine = []
        while (job := jobs.dequeue(f"w{worker}", NOW)) is not None:
            assert job.worker_id == f"w{worker}"
            mine.append(job.id)
        return mine

    taken = [job_id for batch in in_threads(drain) for job_id in batch]
    assert Counter(taken) == Counter(ids)
    assert set(WorkflowJob.objects.values_list("status", "attempt")) == {(Status.RUNNING, 1)}


def test_concurrent_claims_of_one_job_have_one_winner():
    persistence, jobs = OrmPersistence(), OrmJobQueue()
    create_runs(persistence, 1)
    [job_id] = jobs.enqueue([NewJob(run_id="run-000", workflow_id="wf", stage_id="s")], NOW)
    results = in_threads(lambda i: jobs.claim(job_id, f"w{i}", NOW))
    assert sum(r is not None for r in results) == 1
    assert WorkflowJob.objects.get(pk=job_id).attempt == 1


def test_concurrent_event_appends_are_gapless():
    persistence = OrmPersistence()
    create_runs(persistence, 1)
    per_thread, batch = 10, 3

    def append(worker: int) -> None:
        for n in range(per_thread):
            events = [
                {"type": f"w{worker}.{n}.{k}", "timestamp": NOW.isoformat(), "workflow_run_id": "run-000"}
                for k in range(batch)
            ]
            persistence.append_events(events, f"cmd-{worker}-{n}")

    in_threads(append)
    rows = list(OutboxEvent.objects.filter(run_id="run-000").order_by("sequence"))
    total = THREADS * per_thread * batch
    assert [r.sequence for r in rows] == list(range(1, total + 1))
    # One call's events are consecutive and in list order.
    for start in range(0, total, batch):
        types = [r.event_type for r in rows[start : start + batch]]
        assert [t.rsplit(".", 1)[1] for t in types] == [str(k) for k in range(batch)]
        assert len({t.rsplit(".", 1)[0] for t in types}) == 1
    assert WorkflowRun.objects.get(pk="run-000").event_seq == total


def test_concurrent_event_appends_without_run_row_are_gapless():
    persistence = OrmPersistence()

    def append(worker: int) -> None:
        for n in range(5):
            event = {"type": f"w{worker}.{n}", "timestamp": NOW.isoformat(), "workflow_run_id": "ghost"}
            persistence.append_events([event], "c")

    in_threads(append)
    sequences = list(OutboxEvent.objects.filter(run_id="ghost").order_by("sequence").values_list("sequence", flat=True))
    assert sequences == list(range(1, THREADS * 5 + 1))


def test_concurrent_idempotency_acquire_has_one_winner():
    persistence = OrmPersistence()
    states = in_threads(lambda _: persistence.acquire_idempotency_key("k", "run.create", NOW, None).state, threads=2)
    assert sorted(states) == ["acquired", "in_progress"]


def test_concurrent_stale_reclaim_has_one_winner():
    persistence = OrmPersistence()
    persistence.acquire_idempotency_key("k", "run.create", NOW, 60)
    later = NOW.replace(hour=1)
    states = in_threads(lambda _: persistence.acquire_idempotency_key("k", "run.create", later, 60).state)
    assert Counter(states) == Counter({"acquired": 1, "in_progress": THREADS - 1})


def test_release_stale_races_heartbeat_safely():
    persistence, jobs = OrmPersistence(), OrmJobQueue()
    create_runs(persistence, 1)
    ids = jobs.enqueue([NewJob(run_id="run-000", workflow_id="wf", stage_id=f"s{i}") for i in range(20)], NOW)
    for job_id in ids:
        jobs.claim(job_id, "w", NOW)
    later = NOW.replace(hour=2)

    def work(i: int) -> list[str]:
        if i % 2:
            return [j.id for j in jobs.release_stale(NOW.replace(hour=1), later)]
        return [job_id for job_id in ids if jobs.touch(job_id, "w", later)]

    results = in_threads(work)
    released = Counter(job_id for i, batch in enumerate(results) if i % 2 for job_id in batch)
    assert all(n == 1 for n in released.values())  # never released twice
    rows = {r.id: r for r in WorkflowJob.objects.all()}
    for job_id in ids:
        row = rows[job_id]
        if job_id in released:
            assert (row.status, row.worker_id, row.attempt) == (Status.PENDING, None, 1)
        else:
            assert (row.status, row.locked_at) == (Status.RUNNING, later)
