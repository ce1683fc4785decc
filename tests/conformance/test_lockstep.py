"""Lockstep batches: several claimed jobs of different runs begun in one transaction and recorded in another
(``kernel.lockstep.run_jobs``), on the ports it needs (``JobQueue.dequeue_many``, ``Persistence.batch``).

Runs on the in-memory adapters and on the ORM (SQLite, and PostgreSQL in the ``DATABASE_URL`` pass)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_workflow_engine.core.errors import WorkflowEngineError
from django_workflow_engine.kernel import lockstep
from django_workflow_engine.kernel.lockstep import run_jobs
from django_workflow_engine.kernel.records import Status
from tests import flows

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_flows")]


# -- the ports --------------------------------------------------------------------------------------------------


def test_dequeue_many_takes_up_to_the_limit_in_dequeue_order_and_each_job_once(adapters):
    run = adapters.run()
    low = adapters.job(run.id, "low", priority=0)
    high = adapters.job(run.id, "high", priority=5)
    later = adapters.job(run.id, "later", available_at=adapters.now() + timedelta(minutes=5))
    adapters.clock.advance(timedelta(seconds=1))
    newer = adapters.job(run.id, "newer", priority=0)

    first = adapters.jobs.dequeue_many("w1", adapters.now(), 2)
    second = adapters.jobs.dequeue_many("w2", adapters.now(), 5)

    assert [job.id for job in first] == [high, low]
    assert [job.id for job in second] == [newer]  # ``later`` is not due
    assert {(job.status, job.attempt, job.worker_id) for job in first} == {(Status.RUNNING, 1, "w1")}
    assert adapters.jobs.dequeue_many("w3", adapters.now(), 5) == []
    assert adapters.jobs.get_job(later).status == Status.PENDING
    with pytest.raises(ValueError, match="at least 1"):
        adapters.jobs.dequeue_many("w1", adapters.now(), 0)


def test_batch_locks_the_runs_and_answers_their_first_reads(adapters):
    one, two = adapters.run(), adapters.run()
    stage = adapters.stage(one.id, "a")
    persistence = adapters.persistence

    with persistence.batch([two.id, one.id, "missing"], stages=True) as batch:
        assert set(batch.runs) == {one.id, two.id}
        assert [s.id for s in batch.stages[one.id]] == [stage.id]
        assert batch.stages[two.id] == []
        with persistence.atomic():
            assert persistence.lock_run(one.id).id == one.id
            assert [s.id for s in persistence.get_stages(one.id)] == [stage.id]
            persistence.update_stage(stage.id, {"status": Status.RUNNING}, adapters.now())
        with persistence.atomic():
            persistence.update_run(two.id, {"priority": 3}, adapters.now())
        assert persistence.get_stages(one.id)[0].status == Status.RUNNING  # a second read sees the write

    assert persistence.get_stages(one.id)[0].status == Status.RUNNING
    assert persistence.get_run(two.id).priority == 3


def test_an_exception_leaving_a_batch_rolls_back_every_step(adapters):
    one, two = adapters.run(), adapters.run()
    persistence = adapters.persistence

    def steps_then_fail() -> None:
        with persistence.batch([one.id, two.id]):
            with persistence.atomic():
                persistence.update_run(one.id, {"priority": 7}, adapters.now())
            with persistence.atomic():
                persistence.update_run(two.id, {"priority": 8}, adapters.now())
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        steps_then_fail()
    assert persistence.get_run(one.id) == one
    assert persistence.get_run(two.id) == two


def test_an_exception_leaving_an_inner_block_breaks_an_orm_batch(orm):
    run = orm.run()
    seen = []

    def fail_inside() -> None:
        with orm.persistence.batch([run.id]) as batch:
            try:
                with orm.persistence.atomic():
                    raise WorkflowEngineError("inner")
            except WorkflowEngineError:
                seen.append(batch.broken)  # the caller must roll the whole batch back
                raise

    def nest() -> None:
        with orm.persistence.batch([run.id]), orm.persistence.batch([run.id]):
            pass

    with pytest.raises(WorkflowEngineError):
        fail_inside()
    assert seen == [True]
    with pytest.raises(RuntimeError, match="nested"):
        nest()


# -- the kernel path --------------------------------------------------------------------------------------------


@pytest.fixture
def h(make_kernel):
    return make_kernel([flows.diamond])


def _lockstep_until_done(h, jobs):
    """Run jobs in lockstep, then their continuations, round after round; returns every outcome."""
    outcomes, round_ = [], [(job, None) for job in jobs]
    while round_:
        done = run_jobs(h.kernel, round_, continue_as="w1")
        assert None not in done
        outcomes += done
        round_ = [(o.continuation.job, o.continuation) for o in done if o.continuation is not None]
    return outcomes


def test_runs_executed_in_lockstep_end_as_one_job_at_a_time_would_leave_them(h):
    run_ids = [h.start("diamond", {"value": n}) for n in range(4)]
    jobs = h.jobs.dequeue_many("w1", h.clock.now(), 4)

    outcomes = _lockstep_until_done(h, jobs)
    h.drain()  # the parallel siblings (c) no continuation took

    assert [o.stage_id for o in outcomes[:4]] == ["a"] * 4
    assert {o.outcome for o in outcomes} == {"completed"}
    for n, run_id in enumerate(run_ids):
        run = h.run(run_id)
        assert run.status == Status.COMPLETED
        assert run.output == {"total": (2 * n + 1) + (2 * n + 10), "tags": ["b", "c"]}
        types = h.event_types(run_id)
        assert types.count("stage:started") == types.count("stage:completed") == 4
        assert types[-1] == "workflow:completed"
        assert [e.sequence for e in h.persistence.get_events(run_id)] == list(range(1, len(types) + 1))
        assert {(j.status, j.attempt) for j in h.jobs.jobs_for_run(run_id)} == {(Status.COMPLETED, 1)}
    assert dict(flows.CALLS) == {"a": 4, "b": 4, "c": 4, "d": 4}


def test_a_run_cancelled_while_its_stage_ran_is_a_ghost_and_the_others_are_recorded(h, monkeypatch):
    run_ids = [h.start("diamond", {"value": n}) for n in range(3)]
    jobs = h.jobs.dequeue_many("w1", h.clock.now(), 3)
    run_stage = lockstep._run_stage

    def cancelling(deps, workflow, stage_def, begun):
        result = run_stage(deps, workflow, stage_def, begun)
        if begun.run.id == run_ids[1]:
            h.cancel(run_ids[1])  # its own transaction, while no batch is open
        return result

    monkeypatch.setattr(lockstep, "_run_stage", cancelling)
    done = run_jobs(h.kernel, [(job, None) for job in jobs], continue_as="w1")

    by_run = {o.run_id: o for o in done}
    assert by_run[run_ids[1]].ghost
    assert by_run[run_ids[1]].continuation is None
    assert h.run(run_ids[1]).status == Status.CANCELLED
    for run_id in (run_ids[0], run_ids[2]):
        assert by_run[run_id].outcome == "completed"
        assert by_run[run_id].continuation is not None
        assert h.stages(run_id)["a"].status == Status.COMPLETED


def test_jobs_a_batch_cannot_hold_are_left_to_run_job_untouched(h):
    plain = h.start("diamond", {"value": 1})
    # A child run: finishing it wakes its parent, a write to another run's rows.
    child = h.start("diamond", {"value": 2}, parent_run_id=plain, parent_stage_id="a")
    jobs = h.jobs.dequeue_many("w1", h.clock.now(), 2)
    done = run_jobs(h.kernel, [(job, None) for job in jobs], continue_as="w1")

    by_run = dict(zip([job.run_id for job in jobs], done, strict=True))
    assert by_run[plain].outcome == "completed"
    assert by_run[child] is None
    # Not begun: run_job takes it from here.
    assert "a" not in h.stages(child) or h.stages(child)["a"].status == Status.PENDING
    assert [j.status for j in h.jobs.jobs_for_run(child)] == [Status.RUNNING]


def test_one_batch_begins_and_records_every_job_with_a_fixed_number_of_statements(make_kernel):
    h = make_kernel([flows.diamond])
    if make_kernel.kind != "orm" or connection.vendor != "postgresql":
        pytest.skip("statements are sent together on PostgreSQL only")
    counts = []
    for runs in (2, 6):
        for n in range(runs):
            h.start("diamond", {"value": n})
        jobs = h.jobs.dequeue_many("w1", h.clock.now(), runs)
        with CaptureQueriesContext(connection) as captured:
            done = run_jobs(h.kernel, [(job, None) for job in jobs], continue_as="w1")
        assert [o.outcome for o in done] == ["completed"] * runs
        # Without the stages' own log lines (ctx.log writes at once, one statement each).
        counts.append(len([q for q in captured.captured_queries if "workflowlog" not in q["sql"]]))
        h.drain()
    assert counts[0] == counts[1]  # begin: lock + stages + writes; record: lock + writes
