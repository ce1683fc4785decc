"""Eager continuation: the stage whose transition starts the next group also starts that group's first stage
for its worker, in the same transaction, and the worker executes it next (no queue round trip).

Runs on the in-memory adapters and on the ORM (SQLite, and PostgreSQL in the ``DATABASE_URL`` pass)."""

from __future__ import annotations

import pytest

from django_workflow_engine.hosts.drain import drain
from django_workflow_engine.kernel import CancelRun, run_job
from django_workflow_engine.kernel.records import Status
from tests import flows

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _reset():
    flows.reset()
    yield
    flows.reset()


@pytest.fixture
def h(make_kernel):
    return make_kernel([flows.diamond])


def _sequences(h, run_id):
    return [e.sequence for e in h.persistence.get_events(run_id)]


def test_eager_drain_completes_the_diamond_with_one_job_and_one_attempt_per_stage(h):
    run_ids = [h.start("diamond", {"value": n}) for n in range(3)]
    order: list[tuple[str, str]] = []
    totals = drain(h.kernel, eager=True, on_job=lambda o: order.append((o.run_id, o.stage_id)))

    assert totals.jobs == totals.completed == 12
    for n, run_id in enumerate(run_ids):
        run = h.run(run_id)
        assert run.status == Status.COMPLETED
        assert run.output == {"total": (2 * n + 1) + (2 * n + 10), "tags": ["b", "c"]}
        jobs = h.jobs.jobs_for_run(run_id)
        assert sorted(j.stage_id for j in jobs) == ["a", "b", "c", "d"]
        assert {(j.status, j.attempt, j.worker_id) for j in jobs} == {(Status.COMPLETED, 1, None)}
        types = h.event_types(run_id)
        assert types.count("stage:started") == types.count("stage:completed") == 4
        assert types[-1] == "workflow:completed"
        assert _sequences(h, run_id) == list(range(1, len(types) + 1))  # gapless, in order
    assert dict(flows.CALLS) == {"a": 3, "b": 3, "c": 3, "d": 3}
    # a is followed at once by b (the first stage of its group); no other worker took c meanwhile, so b's
    # worker takes it; the stage finishing the group (c) is followed at once by d: one run after the other.
    assert order == [(run_id, stage) for run_id in run_ids for stage in "abcd"]


def test_continuation_is_started_in_the_outcome_transaction(h):
    run_id = h.start("diamond", {"value": 1})
    job = h.jobs.dequeue("w1", h.clock.now())
    outcome = run_job(h.kernel, job, continue_as="w1")

    started = outcome.continuation
    assert outcome.outcome == "completed"
    assert started is not None
    assert started.record.stage_id == "b"
    assert started.job.stage_id == "b"
    stored_job = h.jobs.get_job(started.job.id)
    assert (stored_job.status, stored_job.attempt, stored_job.worker_id) == (Status.RUNNING, 1, "w1")
    stages = h.stages(run_id)
    assert stages["b"].status == Status.RUNNING
    assert stages["b"].started_at is not None
    assert stages["c"].status == Status.PENDING
    assert h.event_types(run_id)[-1] == "stage:started"
    # the sibling is in the queue for any worker; the continuation is not
    other = h.jobs.dequeue("w2", h.clock.now())
    assert other.stage_id == "c"
    assert h.jobs.dequeue("w2", h.clock.now()) is None

    b_done = run_job(h.kernel, started.job, continue_as="w1", started=started)
    assert b_done.outcome == "completed"
    assert b_done.continuation is None  # its sibling is held by w2: nothing to take
    assert run_job(h.kernel, other, continue_as="w2").continuation.record.stage_id == "d"


def test_a_worker_finishing_a_parallel_stage_takes_a_sibling_no_one_claimed(h):
    run_id = h.start("diamond", {"value": 1})
    b = run_job(h.kernel, h.jobs.dequeue("w1", h.clock.now()), continue_as="w1").continuation
    before = len(h.event_types(run_id))

    outcome = run_job(h.kernel, b.job, continue_as="w1", started=b)
    taken = outcome.continuation
    assert (outcome.outcome, outcome.transition) == ("completed", "noop")
    assert taken is not None
    assert (taken.record.stage_id, taken.job.stage_id) == ("c", "c")
    stored = h.jobs.get_job(taken.job.id)
    assert (stored.status, stored.attempt, stored.worker_id) == (Status.RUNNING, 1, "w1")
    stages = h.stages(run_id)
    assert (stages["b"].status, stages["c"].status) == (Status.COMPLETED, Status.RUNNING)
    assert stages["c"].started_at == h.clock.now()
    assert h.event_types(run_id)[before:] == ["stage:completed", "stage:started"]
    assert h.jobs.dequeue("w2", h.clock.now()) is None  # c is no longer in the queue for others
    assert {s.stage_id: s.status for s in taken.stages} == {
        "a": Status.COMPLETED,
        "b": Status.COMPLETED,
        "c": Status.RUNNING,
    }

    d = run_job(h.kernel, taken.job, continue_as="w1", started=taken).continuation
    assert d.record.stage_id == "d"
    assert run_job(h.kernel, d.job, continue_as="w1", started=d).transition == "completed"
    assert h.run(run_id).output == {"total": 3 + 12, "tags": ["b", "c"]}
    assert {(j.stage_id, j.status, j.attempt) for j in h.jobs.jobs_for_run(run_id)} == {
        (stage, Status.COMPLETED, 1) for stage in "abcd"
    }
    assert _sequences(h, run_id) == list(range(1, len(h.event_types(run_id)) + 1))


def test_a_sibling_waiting_out_a_retry_backoff_is_not_taken_early(h):
    flows.FAIL["c"] = "flaky"
    run_id = h.start("diamond", {"value": 1})
    b = run_job(h.kernel, h.jobs.dequeue("w1", h.clock.now()), continue_as="w1").continuation
    assert run_job(h.kernel, h.jobs.dequeue("w2", h.clock.now())).outcome == "retrying"
    flows.FAIL.clear()

    outcome = run_job(h.kernel, b.job, continue_as="w1", started=b)
    assert outcome.continuation is None  # c's retry is not due yet
    assert h.stages(run_id)["c"].status != Status.RUNNING
    h.clock.advance(seconds=60)
    drain(h.kernel, eager=True)
    assert h.run(run_id).status == Status.COMPLETED
    assert flows.CALLS["c"] == 2


def test_without_a_worker_id_a_finished_sibling_takes_nothing(h):
    run_id = h.start("diamond", {"value": 1})
    run_job(h.kernel, h.jobs.dequeue("w1", h.clock.now()))
    b = h.jobs.dequeue("w1", h.clock.now())
    assert run_job(h.kernel, b).continuation is None
    assert h.stages(run_id)["c"].status == Status.PENDING
    assert h.jobs.dequeue("w2", h.clock.now()).stage_id == "c"


def test_without_a_worker_id_the_next_group_only_goes_to_the_queue(h):
    run_id = h.start("diamond", {"value": 1})
    job = h.jobs.dequeue("w1", h.clock.now())
    outcome = run_job(h.kernel, job)
    assert outcome.continuation is None
    assert {s.stage_id: s.status for s in h.stages(run_id).values()} == {
        "a": Status.COMPLETED,
        "b": Status.PENDING,
        "c": Status.PENDING,
    }


def test_a_released_continuation_is_redelivered_without_losing_an_attempt(h):
    run_id = h.start("diamond", {"value": 1})
    outcome = run_job(h.kernel, h.jobs.dequeue("w1", h.clock.now()), continue_as="w1")
    started = outcome.continuation

    assert h.jobs.release(started.job.id, "other-worker", h.clock.now()) is False  # not its lease
    assert h.jobs.release(started.job.id, "w1", h.clock.now()) is True
    released = h.jobs.get_job(started.job.id)
    assert (released.status, released.attempt, released.worker_id) == (Status.PENDING, 0, None)
    assert h.jobs.release(started.job.id, "w1", h.clock.now()) is False  # no longer held

    drain(h.kernel, eager=True)
    assert h.run(run_id).status == Status.COMPLETED
    b_job = h.jobs.get_job(started.job.id)
    assert (b_job.status, b_job.attempt) == (Status.COMPLETED, 1)
    assert flows.CALLS["b"] == 1


def test_cancel_while_a_continuation_runs_discards_it_and_starts_nothing(h):
    run_id = h.start("diamond", {"value": 1})
    outcome = run_job(h.kernel, h.jobs.dequeue("w1", h.clock.now()), continue_as="w1")
    started = outcome.continuation
    assert h.dispatch(CancelRun(run_id=run_id)).cancelled

    result = run_job(h.kernel, started.job, continue_as="w1", started=started)
    assert result.ghost
    assert result.continuation is None
    assert h.run(run_id).status == Status.CANCELLED
    assert "d" not in h.stages(run_id)
    assert h.jobs.dequeue("w1", h.clock.now()) is None


def test_a_failing_continuation_is_retried_through_the_queue(h):
    flows.FAIL["b"] = "flaky"
    run_id = h.start("diamond", {"value": 1})
    outcome = run_job(h.kernel, h.jobs.dequeue("w1", h.clock.now()), continue_as="w1")
    started = outcome.continuation
    failed = run_job(h.kernel, started.job, continue_as="w1", started=started)
    assert failed.outcome == "retrying"
    assert failed.continuation is None
    flows.FAIL.clear()

    drain(h.kernel, eager=True)
    assert h.run(run_id).status == Status.COMPLETED
    b_job = h.jobs.get_job(started.job.id)
    assert (b_job.status, b_job.attempt) == (Status.COMPLETED, 2)
    assert flows.CALLS["b"] == 2


def test_max_jobs_hands_back_a_continuation_it_will_not_run(h):
    run_id = h.start("diamond", {"value": 1})
    totals = drain(h.kernel, eager=True, max_jobs=1)
    assert totals.jobs == 1
    assert {j.stage_id: j.status for j in h.jobs.jobs_for_run(run_id)} == {
        "a": Status.COMPLETED,
        "b": Status.PENDING,
        "c": Status.PENDING,
    }
    drain(h.kernel, eager=True)
    assert h.run(run_id).status == Status.COMPLETED
