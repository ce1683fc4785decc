"""The JobQueue port: the in-memory reference and the ORM queue must behave the same."""

from __future__ import annotations

from datetime import timedelta

import pytest

from django_workflow_engine.core.errors import WorkflowEngineError
from django_workflow_engine.kernel.records import NewJob, Status
from tests.conformance.conftest import orm_adapters

pytestmark = pytest.mark.django_db  # the ORM variant needs the test database


@pytest.fixture
def q(adapters):
    adapters.run("r1")
    adapters.run("r2")
    return adapters


def test_enqueue_returns_ids_in_order_and_stores_pending(q):
    now = q.now()
    ids = q.jobs.enqueue(
        [
            NewJob(run_id="r1", workflow_id="wf", stage_id="a", priority=7, max_attempts=5, payload={"config": {}}),
            NewJob(run_id="r1", workflow_id="wf", stage_id="b"),
        ],
        now,
    )
    assert len(ids) == len(set(ids)) == 2
    job = q.jobs.get_job(ids[0])
    assert (job.status, job.attempt, job.priority, job.max_attempts, job.payload) == (
        Status.PENDING,
        0,
        7,
        5,
        {"config": {}},
    )
    assert (job.available_at, job.created_at, job.updated_at, job.worker_id) == (now, now, now, None)
    assert [j.id for j in q.jobs.jobs_for_run("r1")] == ids


def test_get_missing_job_is_none(q):
    assert q.jobs.get_job("nope") is None


def test_dequeue_priority_then_fifo(q):
    low = q.job("r1", "low", priority=1)
    first = q.job("r1", "first", priority=9)
    second = q.job("r2", "second", priority=9)  # same created_at as ``first``: insertion order decides
    third = q.job("r2", "third", priority=9)
    order = [q.jobs.dequeue("w", q.now()).id for _ in range(4)]
    assert order == [first, second, third, low]


def test_dequeue_older_created_at_first(q):
    older = q.job("r1", "older")
    q.clock.advance(seconds=1)
    newer_id = q.job("r1", "newer")
    assert [q.jobs.dequeue("w", q.now()).id for _ in range(2)] == [older, newer_id]


def test_dequeue_none_when_empty(q):
    assert q.jobs.dequeue("w", q.now()) is None


def test_dequeue_takes_a_job_once(q):
    q.job("r1")
    assert q.jobs.dequeue("w1", q.now()) is not None
    assert q.jobs.dequeue("w2", q.now()) is None


def test_dequeue_sets_lease_and_increments_attempt(q):
    job_id = q.job("r1")
    now = q.clock.advance(seconds=2)
    job = q.jobs.dequeue("w1", now)
    assert (job.id, job.status, job.attempt, job.worker_id) == (job_id, Status.RUNNING, 1, "w1")
    assert (job.locked_at, job.started_at, job.updated_at) == (now, now, now)
    assert q.jobs.get_job(job_id) == job


def test_future_job_waits_until_due(q):
    due_at = q.now() + timedelta(seconds=30)
    job_id = q.job("r1", available_at=due_at)
    assert q.jobs.dequeue("w", q.now()) is None
    assert q.jobs.claim(job_id, "w", q.now()) is None
    assert q.jobs.dequeue("w", due_at).id == job_id


def test_claim_specific_job(q):
    q.job("r1", "other", priority=9)
    job_id = q.job("r1", "wanted", priority=1)
    job = q.jobs.claim(job_id, "w", q.now())
    assert (job.id, job.status, job.attempt, job.worker_id) == (job_id, Status.RUNNING, 1, "w")
    assert q.jobs.claim(job_id, "w2", q.now()) is None
    assert q.jobs.claim("missing", "w", q.now()) is None


def test_complete_clears_lease(q):
    job_id = q.job("r1")
    q.jobs.dequeue("w", q.now())
    now = q.clock.advance(seconds=1)
    q.jobs.complete(job_id, now)
    job = q.jobs.get_job(job_id)
    assert (job.status, job.completed_at, job.worker_id, job.locked_at, job.updated_at) == (
        Status.COMPLETED,
        now,
        None,
        None,
        now,
    )


def test_complete_missing_job_raises(q):
    with pytest.raises(WorkflowEngineError):
        q.jobs.complete("missing", q.now())


def test_suspend(q):
    job_id = q.job("r1")
    q.jobs.dequeue("w", q.now())
    poll_at = q.now() + timedelta(minutes=5)
    q.jobs.suspend(job_id, poll_at, q.now())
    job = q.jobs.get_job(job_id)
    assert (job.status, job.available_at, job.worker_id, job.locked_at) == (Status.SUSPENDED, poll_at, None, None)
    assert q.jobs.dequeue("w", poll_at) is None  # a suspended job is not PENDING


def test_fail_with_retry_requeues(q):
    job_id = q.job("r1")
    q.jobs.dequeue("w", q.now())
    retry_at = q.now() + timedelta(seconds=10)
    q.jobs.fail(job_id, "boom", retry_at, q.now())
    job = q.jobs.get_job(job_id)
    assert (job.status, job.available_at, job.last_error, job.worker_id, job.locked_at, job.attempt) == (
        Status.PENDING,
        retry_at,
        "boom",
        None,
        None,
        1,
    )
    assert job.completed_at is None
    assert q.jobs.dequeue("w", q.now()) is None
    again = q.jobs.dequeue("w", retry_at)
    assert (again.id, again.attempt, again.last_error) == (job_id, 2, "boom")


def test_fail_without_retry_is_final(q):
    job_id = q.job("r1")
    q.jobs.dequeue("w", q.now())
    now = q.clock.advance(seconds=1)
    q.jobs.fail(job_id, "fatal", None, now)
    job = q.jobs.get_job(job_id)
    assert (job.status, job.completed_at, job.last_error, job.worker_id) == (Status.FAILED, now, "fatal", None)


def test_cancelled_job_stays_cancelled(q):
    job_id = q.job("r1")
    q.jobs.cancel_by_run("r1", q.now())
    q.jobs.complete(job_id, q.now())
    q.jobs.fail(job_id, "x", None, q.now())
    q.jobs.fail(job_id, "x", q.now(), q.now())
    q.jobs.suspend(job_id, q.now(), q.now())
    job = q.jobs.get_job(job_id)
    assert (job.status, job.last_error) == (Status.CANCELLED, None)


def test_touch_refreshes_only_own_running_lease(q):
    job_id = q.job("r1")
    q.jobs.dequeue("w1", q.now())
    later = q.clock.advance(seconds=30)
    assert q.jobs.touch(job_id, "w2", later) is False
    assert q.jobs.get_job(job_id).locked_at != later
    assert q.jobs.touch(job_id, "w1", later) is True
    assert q.jobs.get_job(job_id).locked_at == later
    q.jobs.complete(job_id, later)
    assert q.jobs.touch(job_id, "w1", later) is False
    assert q.jobs.touch("missing", "w1", later) is False


def test_release_stale_only_past_cutoff_and_keeps_attempt(q):
    stale_id = q.job("r1", "stale")
    q.jobs.dequeue("w1", q.now())
    q.clock.advance(seconds=60)
    fresh_id = q.job("r1", "fresh")
    q.jobs.dequeue("w2", q.now())
    now = q.clock.advance(seconds=1)
    released = q.jobs.release_stale(now - timedelta(seconds=30), now)
    assert [j.id for j in released] == [stale_id]
    job = released[0]
    assert (job.status, job.worker_id, job.locked_at, job.available_at, job.attempt) == (
        Status.PENDING,
        None,
        None,
        now,
        1,
    )
    assert q.jobs.get_job(stale_id) == job
    assert q.jobs.get_job(fresh_id).status == Status.RUNNING
    assert q.jobs.release_stale(now - timedelta(seconds=30), now) == []


def test_release_stale_cutoff_is_exclusive(q):
    job_id = q.job("r1")
    q.jobs.dequeue("w", q.now())
    assert q.jobs.release_stale(q.now(), q.now()) == []
    assert [j.id for j in q.jobs.release_stale(q.now() + timedelta(microseconds=1), q.now())] == [job_id]


def test_cancel_by_run_leaves_running_and_other_runs(q):
    running = q.job("r1", "running", priority=9)
    q.jobs.dequeue("w", q.now())
    pending = q.job("r1", "pending")
    suspended = q.job("r1", "suspended")
    q.jobs.claim(suspended, "w", q.now())
    q.jobs.suspend(suspended, q.now(), q.now())
    other = q.job("r2", "other")
    now = q.clock.advance(seconds=1)
    assert q.jobs.cancel_by_run("r1", now) == 2
    statuses = {j.id: j.status for j in q.jobs.jobs_for_run("r1")}
    assert statuses == {running: Status.RUNNING, pending: Status.CANCELLED, suspended: Status.CANCELLED}
    assert q.jobs.get_job(pending).completed_at == now
    assert q.jobs.get_job(other).status == Status.PENDING


def test_complete_suspended(q):
    job_id = q.job("r1", "batch")
    q.jobs.dequeue("w", q.now())
    q.jobs.suspend(job_id, q.now(), q.now())
    other = q.job("r1", "other")
    now = q.clock.advance(seconds=1)
    q.jobs.complete_suspended("r1", "batch", now)
    job = q.jobs.get_job(job_id)
    assert (job.status, job.completed_at) == (Status.COMPLETED, now)
    assert q.jobs.get_job(other).status == Status.PENDING


def test_wake_suspended_queues_the_job_again_without_using_an_attempt(q):
    job_id = q.job("r1", "batch")
    q.jobs.dequeue("w", q.now())
    q.jobs.suspend(job_id, q.now() + timedelta(hours=1), q.now())
    running = q.job("r1", "running")
    q.jobs.claim(running, "w", q.now())
    now = q.clock.advance(seconds=5)
    assert q.jobs.wake_suspended("r1", "batch", now) is True
    job = q.jobs.get_job(job_id)
    assert (job.status, job.available_at, job.attempt, job.updated_at) == (Status.PENDING, now, 0, now)
    assert q.jobs.wake_suspended("r1", "batch", now) is False  # no longer suspended
    assert q.jobs.wake_suspended("r1", "running", now) is False
    assert q.jobs.get_job(running).status == Status.RUNNING
    assert q.jobs.dequeue("w", now).id == job_id


def test_due_pending(q):
    old_low = q.job("r1", "old-low", priority=1)
    old_high = q.job("r1", "old-high", priority=9)
    q.job("r1", "future", available_at=q.now() + timedelta(hours=1))
    running = q.job("r1", "running", priority=10)
    q.jobs.claim(running, "w", q.now())
    q.clock.advance(seconds=60)
    q.job("r1", "recent")
    now = q.now()
    assert [j.id for j in q.jobs.due_pending(now, now - timedelta(seconds=30), 10)] == [old_high, old_low]
    assert [j.id for j in q.jobs.due_pending(now, now - timedelta(seconds=30), 1)] == [old_high]


# -- the doorbell (ORM only) --------------------------------------------------------------------------------
class Bell:
    def __init__(self):
        self.calls = []

    def __call__(self, ids, at=None):
        self.calls.append((list(ids), at))


@pytest.fixture
def rung():
    bell = Bell()
    adapters = orm_adapters(on_enqueue=bell)
    adapters.run("r1")
    return adapters, bell


def test_on_enqueue_called_after_commit_only(rung, django_capture_on_commit_callbacks):
    q, bell = rung
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        ids = q.jobs.enqueue(
            [NewJob(run_id="r1", workflow_id="wf", stage_id="a"), NewJob(run_id="r1", workflow_id="wf", stage_id="b")],
            q.now(),
        )
        assert bell.calls == []
    assert len(callbacks) == 1
    assert bell.calls == [(ids, None)]


def test_on_enqueue_not_called_on_rollback(rung, django_capture_on_commit_callbacks):
    q, bell = rung

    def enqueue_then_fail():
        with q.persistence.atomic():
            q.job("r1")
            raise RuntimeError

    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(RuntimeError):
        enqueue_then_fail()
    assert callbacks == []
    assert bell.calls == []


def test_on_enqueue_future_job_passes_due_time(rung, django_capture_on_commit_callbacks):
    q, bell = rung
    later = q.now() + timedelta(seconds=5)
    with django_capture_on_commit_callbacks(execute=True):
        now_id = q.job("r1", "now")
        later_id = q.job("r1", "later", available_at=later)
    assert bell.calls == [([now_id], None), ([later_id], later)]


def test_on_enqueue_rings_for_retry_and_released_jobs(rung, django_capture_on_commit_callbacks):
    q, bell = rung
    with django_capture_on_commit_callbacks(execute=True):
        job_id = q.job("r1")
        q.jobs.dequeue("w", q.now())
        retry_at = q.now() + timedelta(seconds=4)
        q.jobs.fail(job_id, "boom", retry_at, q.now())
        q.jobs.fail(job_id, "final", None, q.now())  # no retry: no ring
    assert bell.calls == [([job_id], None), ([job_id], retry_at)]
    bell.calls.clear()
    with django_capture_on_commit_callbacks(execute=True):
        stale_id = q.job("r1", "stale")
        q.jobs.claim(stale_id, "w", q.now())
        now = q.clock.advance(seconds=60)
        q.jobs.release_stale(now - timedelta(seconds=1), now)
    assert bell.calls == [([stale_id], None), ([stale_id], None)]  # enqueued, then released


def test_on_enqueue_rings_for_a_woken_suspended_job(rung, django_capture_on_commit_callbacks):
    q, bell = rung
    job_id = q.job("r1", "batch")
    q.jobs.dequeue("w", q.now())
    q.jobs.suspend(job_id, q.now() + timedelta(hours=1), q.now())
    with django_capture_on_commit_callbacks(execute=True):
        q.jobs.wake_suspended("r1", "batch", q.now())
        assert bell.calls == []  # after commit only
    assert bell.calls == [([job_id], None)]


def test_on_enqueue_errors_do_not_break_the_commit(rung, django_capture_on_commit_callbacks):
    q, _ = rung

    def broken(ids, at=None):
        raise ConnectionError("redis is down")

    q.jobs.on_enqueue = broken
    with django_capture_on_commit_callbacks(execute=True):
        job_id = q.job("r1")
    assert q.jobs.get_job(job_id).status == Status.PENDING


def test_claim_stage_takes_the_due_pending_job_of_that_stage_only(q):
    mine = q.job("r1", "b")
    q.job("r1", "c")
    q.job("r2", "b")
    assert q.jobs.claim_stage("r1", "x", "w", q.now()) is None  # no such stage
    job = q.jobs.claim_stage("r1", "b", "w", q.now())
    assert (job.id, job.status, job.attempt, job.worker_id, job.locked_at) == (
        mine,
        Status.RUNNING,
        1,
        "w",
        q.now(),
    )
    assert q.jobs.claim_stage("r1", "b", "w2", q.now()) is None  # taken
    assert sorted(q.jobs.dequeue("w2", q.now()).stage_id for _ in range(1)) == ["c"]


def test_claim_stage_skips_jobs_not_due_and_not_pending(q):
    later = q.job("r1", "b", available_at=q.now() + timedelta(seconds=5))
    assert q.jobs.claim_stage("r1", "b", "w", q.now()) is None
    q.clock.advance(seconds=5)
    assert q.jobs.claim_stage("r1", "b", "w", q.now()).id == later
    q.jobs.complete(later, q.now())
    assert q.jobs.claim_stage("r1", "b", "w", q.now()) is None


def test_claim_stage_withdraws_the_message_after_commit_only(django_capture_on_commit_callbacks):
    bell, withdrawn = Bell(), []
    q = orm_adapters(on_enqueue=bell, on_withdraw=withdrawn.append)
    q.run("r1")
    with django_capture_on_commit_callbacks(execute=True):
        job_id = q.job("r1", "b")
    with django_capture_on_commit_callbacks(execute=True), q.persistence.atomic():
        assert q.jobs.claim_stage("r1", "b", "w", q.now()).id == job_id
        assert withdrawn == []
    assert withdrawn == [[job_id]]
    assert bell.calls == [([job_id], None)]
    with django_capture_on_commit_callbacks(execute=True):
        assert q.jobs.claim_stage("r1", "b", "w", q.now()) is None
    assert withdrawn == [[job_id]]  # nothing taken, nothing withdrawn
