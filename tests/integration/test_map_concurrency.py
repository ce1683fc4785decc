"""A map's items settle without the run lock: real threads on PostgreSQL, each with its own connection, finishing
items at the same moment. Each item must be counted once on its map's record, never twice, never lost."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from django_workflow_engine import engine
from django_workflow_engine.hosts.drain import drain
from django_workflow_engine.kernel import run_job
from django_workflow_engine.models import WorkflowJob, WorkflowRun, WorkflowStage
from tests import flows_map

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _clean():
    flows_map.EXECUTED.clear()
    flows_map.FLAKY_LEFT.clear()
    yield
    flows_map.EXECUTED.clear()


def _fanned_out(n: int) -> WorkflowRun:
    run = engine.start("map-squares", {"n": n})
    drain(engine.kernel, max_jobs=1)  # split, and the fan-out in its outcome transaction
    assert WorkflowStage.objects.filter(run=run, item_index__isnull=False).count() == n
    return run


def _threads(*fns):
    """Run each fn on its own thread (its own connection); exceptions are returned, not raised."""
    results: list = [None] * len(fns)

    def wrap(i, fn):
        try:
            results[i] = fn()
        except Exception as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=wrap, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_items_counted_at_the_same_moment_by_two_workers_are_each_counted_once(monkeypatch):
    n, together = 40, 12
    run = _fanned_out(n)
    persistence = engine.kernel.deps.persistence
    count = persistence.count_map_items
    barrier = threading.Barrier(2, timeout=30)
    calls = threading.local()
    seen: list[int] = []

    def count_together(*args, **kwargs):
        # The first counts of each worker wait for the other's, so both UPDATE the map's record at once.
        calls.n = getattr(calls, "n", 0) + 1
        if calls.n <= together:
            barrier.wait()
        counted = count(*args, **kwargs)
        seen.append(counted.metrics["map_done"])
        return counted

    monkeypatch.setattr(persistence, "count_map_items", count_together)

    def worker(name: str):
        done = 0
        while True:
            job = engine.kernel.jobs.dequeue(name, engine.kernel.clock.now())
            if job is None:
                return done
            started = None
            while job is not None:  # an item goes on with the next one it takes, as runworker does
                outcome = run_job(engine.kernel, job, continue_as=name, started=started)
                assert not outcome.ghost, outcome
                done += 1
                started = outcome.continuation
                job = started.job if started is not None else None

    a, b = _threads(lambda: worker("a"), lambda: worker("b"))
    assert not isinstance(a, Exception), a
    assert not isinstance(b, Exception), b
    assert min(a, b) >= together  # both workers counted items at the same moments
    assert sorted(seen) == list(range(1, n + 1))  # every count saw its own total: none lost, none twice
    engine.run_until_idle()  # the stage after the map
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert run.output == {"sum": sum(i * i for i in range(n)), "squares": [i * i for i in range(n)]}
    parent = WorkflowStage.objects.get(run=run, stage_id="square")
    assert (parent.metrics["map_done"], parent.metrics["map_queued"]) == (n, n)
    assert sorted(flows_map.EXECUTED) == list(range(n))
    assert set(WorkflowJob.objects.filter(run_id=run.id).values_list("attempt", flat=True)) == {1}


def _worker(name: str) -> int:
    """A worker's loop, as runworker runs it: dequeue, execute, go on with the item it took."""
    done = 0
    while (job := engine.kernel.jobs.dequeue(name, engine.kernel.clock.now())) is not None:
        started = None
        while job is not None:
            outcome = run_job(engine.kernel, job, continue_as=name, started=started)
            done += 1
            started = outcome.continuation
            job = started.job if started is not None else None
    return done


def test_failures_counted_by_the_locked_transition_and_completions_counted_at_once_add_up():
    # on_error="continue", max_parallel=3: an item failed for good is counted by the run's transition (run
    # locked) while the other worker counts completed items (run shared) on the same record.
    n, bad = 30, [3, 7, 12, 20, 29]
    run = engine.start("map-squares-tolerant", {"n": n, "bad": bad})
    drain(engine.kernel, max_jobs=1)
    a, b = _threads(lambda: _worker("a"), lambda: _worker("b"))
    assert not isinstance(a, Exception), a
    assert not isinstance(b, Exception), b
    engine.run_until_idle()  # retries due later, and the stage after the map
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert [e["index"] for e in run.output["errors"]] == bad
    assert run.output["sum"] == sum(i * i for i in range(n) if i not in bad)
    metrics = WorkflowStage.objects.get(run=run, stage_id="square").metrics
    assert (metrics["map_done"], metrics["map_failed"], metrics["map_queued"]) == (n - len(bad), bad, n)


def test_two_deliveries_of_one_item_finishing_together_count_it_once(monkeypatch):
    run = _fanned_out(3)
    kernel = engine.kernel
    job_id = WorkflowJob.objects.get(run=run, stage_id="square[1]").id
    job = kernel.jobs.claim(job_id, "first", kernel.clock.now())
    # Its lease expired and another worker holds it too: both deliveries begin, run the item and write their
    # outcome at the same moment.
    persistence = kernel.deps.persistence
    write = persistence.update_open_stage
    barrier = threading.Barrier(2, timeout=30)

    def write_together(run_id, stage_id, fields, now, statuses, stage_pk=None):
        if fields.get("status") == "COMPLETED":
            barrier.wait()
        return write(run_id, stage_id, fields, now, statuses, stage_pk)

    monkeypatch.setattr(persistence, "update_open_stage", write_together)
    first, second = _threads(lambda: run_job(kernel, job), lambda: run_job(kernel, job))
    outcomes = sorted([first, second], key=lambda o: o.ghost)
    assert [(o.outcome, o.ghost) for o in outcomes] == [("completed", False), ("failed", True)]
    assert flows_map.EXECUTED == [1, 1]  # delivered twice, executed twice: recorded and counted once
    assert WorkflowStage.objects.get(run=run, stage_id="square").metrics["map_done"] == 1
    monkeypatch.undo()
    engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert run.output["squares"] == [0, 1, 4]
    assert WorkflowStage.objects.get(run=run, stage_id="square").metrics["map_done"] == 3


def test_a_cancel_waits_for_items_in_flight_and_their_results_after_it_are_discarded(monkeypatch):
    run = _fanned_out(4)
    kernel = engine.kernel
    job = kernel.jobs.claim(WorkflowJob.objects.get(run=run, stage_id="square[0]").id, "w", kernel.clock.now())
    persistence = kernel.deps.persistence
    write = persistence.update_open_stage
    writing, cancelled = threading.Event(), threading.Event()

    def write_after_cancel(run_id, stage_id, fields, now, statuses, stage_pk=None):
        if fields.get("status") == "COMPLETED":
            writing.set()
            cancelled.wait(30)  # the cancel below cannot commit while this transaction shares the run
        return write(run_id, stage_id, fields, now, statuses, stage_pk)

    monkeypatch.setattr(persistence, "update_open_stage", write_after_cancel)

    def cancel():
        writing.wait(30)
        timer = threading.Timer(1.0, cancelled.set)  # lets the item go on while the cancel waits for its lock
        timer.start()
        engine.cancel(run.id)
        return cancelled.is_set()

    item, waited = _threads(lambda: run_job(kernel, job), cancel)
    assert waited is True  # the cancel committed only after the item's transaction let the run go
    assert not isinstance(item, Exception), item
    assert (item.outcome, item.ghost) == ("completed", False)  # it shared the run before the cancel locked it
    run.refresh_from_db()
    assert run.status == "CANCELLED"
    stages = dict(WorkflowStage.objects.filter(run=run, item_index__isnull=False).values_list("stage_id", "status"))
    assert stages == {
        "square[0]": "COMPLETED",
        "square[1]": "CANCELLED",
        "square[2]": "CANCELLED",
        "square[3]": "CANCELLED",
    }
    # a delivery of a cancelled item afterwards is a ghost, and counts nothing
    ghost = run_job(kernel, kernel.jobs.claim(job.id, "w", kernel.clock.now()) or job)
    assert ghost.ghost
    assert WorkflowStage.objects.get(run=run, stage_id="square").metrics["map_done"] == 1
