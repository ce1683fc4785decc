"""Real concurrency on PostgreSQL: threads with their own connections racing through the kernel."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection

from django_workflow_engine import engine
from django_workflow_engine.errors import IdempotencyInProgressError
from django_workflow_engine.kernel import (
    CancelRun,
    ClaimPendingRuns,
    CreateRun,
    ExecuteJob,
    TransitionRun,
    run_job,
)
from django_workflow_engine.models import WorkflowJob, WorkflowRun, WorkflowStage
from tests import flows

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _reset():
    flows.reset()
    yield
    flows.reset()


def _claim_first_job(run):
    job_id = WorkflowJob.objects.get(run=run).id
    return engine.kernel.jobs.claim(job_id, "w", engine.kernel.clock.now())


def race(*fns, rounds: int = 1):
    """Run each fn on its own thread, released together; returns results (exceptions returned, not raised)."""
    barrier = threading.Barrier(len(fns))
    results: list = [None] * len(fns)

    def wrap(i, fn):
        try:
            barrier.wait(timeout=10)
            results[i] = fn()
        except Exception as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=wrap, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_two_claim_loops_never_claim_a_run_twice():
    kernel = engine.kernel
    ids = {kernel.dispatch(CreateRun(workflow_id="triple", input={"n": i})).run_id for i in range(40)}

    def loop():
        claimed = []
        while True:
            batch = engine.kernel.dispatch(ClaimPendingRuns(worker_id="x", max_claims=3)).claimed
            if not batch:
                return claimed
            claimed += [c.run_id for c in batch]

    a, b = race(loop, loop)
    assert not isinstance(a, Exception)
    assert not isinstance(b, Exception)
    assert not set(a) & set(b)
    assert set(a) | set(b) == ids
    assert WorkflowJob.objects.count() == 40
    assert set(WorkflowRun.objects.values_list("status", flat=True)) == {"RUNNING"}


def test_concurrent_transitions_advance_a_run_once():
    for _ in range(5):
        run = engine.start("triple", {"n": 1})
        job = _claim_first_job(run)
        result = engine.kernel.dispatch(ExecuteJob(run.id, "triple", job.stage_id))
        assert result.outcome == "completed"
        engine.kernel.jobs.complete(job.id, engine.kernel.clock.now())
        actions = race(*[lambda r=run: engine.kernel.dispatch(TransitionRun(r.id)).action] * 3)
        assert sorted(actions) == ["advanced", "noop", "noop"]
        assert WorkflowJob.objects.filter(run=run, stage_id__in=["left", "right"]).count() == 2
        assert WorkflowStage.objects.filter(run=run).count() == 3


def test_same_idempotency_key_from_two_threads_runs_the_handler_once():
    for i in range(5):
        key = f"upload-{i}"
        results = race(*[lambda k=key: engine.start("triple", {"n": 1}, idempotency_key=k)] * 2)
        runs = [r for r in results if isinstance(r, WorkflowRun)]
        errors = [r for r in results if isinstance(r, Exception)]
        assert all(isinstance(e, IdempotencyInProgressError) for e in errors), errors
        assert len({r.id for r in runs}) == 1
    assert WorkflowRun.objects.count() == 5


def test_cancel_racing_a_stage_completion_never_leaves_work_behind():
    outcomes = Counter()
    for _ in range(12):
        run = engine.start("triple", {"n": 1})
        job = _claim_first_job(run)
        done, cancelled = race(
            lambda j=job: run_job(engine.kernel, j),
            lambda r=run: engine.kernel.dispatch(CancelRun(r.id)).cancelled,
        )
        assert not isinstance(done, Exception), done
        assert cancelled is True
        run.refresh_from_db()
        assert run.status == "CANCELLED"
        assert not WorkflowJob.objects.filter(run=run, status__in=["PENDING", "RUNNING"]).exists()
        assert not WorkflowStage.objects.filter(run=run, status__in=["PENDING", "RUNNING"]).exists()
        ingest = WorkflowStage.objects.get(run=run, stage_id="ingest")
        later = WorkflowStage.objects.filter(run=run, execution_group__gt=1)
        if ingest.status == "COMPLETED":
            # the completion won: the next group may exist, but it is cancelled, never left runnable
            assert set(later.values_list("status", flat=True)) <= {"CANCELLED"}
        else:
            assert ingest.status == "CANCELLED"
            assert not later.exists()
        outcomes["completed first" if done.outcome == "completed" else "cancel first"] += 1
    assert sum(outcomes.values()) == 12
