"""Deferred writes on PostgreSQL: inside ``atomic()`` the hot path's writes leave together in one
statement, reads still see every earlier write, errors still surface inside the block, and a stage costs a
handful of statements."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_workflow_engine.adapters.job_queue import OrmJobQueue
from django_workflow_engine.adapters.persistence import OrmPersistence
from django_workflow_engine.core.errors import RunNotFound, WorkflowEngineError
from django_workflow_engine.core.ids import new_id
from django_workflow_engine.hosts.drain import drain
from django_workflow_engine.kernel import run_job
from django_workflow_engine.kernel.records import NewJob, RunRecord, StageRecord, Status
from django_workflow_engine.models import OutboxEvent, WorkflowJob, WorkflowRun, WorkflowStage
from tests import flows
from tests.harness import OrmKernel

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _statements(ctx: CaptureQueriesContext) -> list[str]:
    """What was sent, without transaction control (the test's own transaction makes blocks savepoints)."""
    control = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")
    return [q["sql"] for q in ctx.captured_queries if not q["sql"].startswith(control)]


@pytest.fixture
def ports():
    persistence, jobs = OrmPersistence(), OrmJobQueue()
    run = persistence.create_run(
        RunRecord(id=new_id(), workflow_id="wf", workflow_name="W", workflow_type="wf", input={}), NOW
    )
    stage = persistence.create_stages(
        [StageRecord(id=new_id(), run_id=run.id, stage_id="s1", stage_name="S1", stage_number=1, execution_group=1)],
        NOW,
    )[0]
    job_id = jobs.enqueue([NewJob(run_id=run.id, workflow_id="wf", stage_id="s1")], NOW)[0]
    return persistence, jobs, run, stage, job_id


def test_writes_of_one_block_leave_in_one_statement(ports):
    persistence, jobs, run, stage, job_id = ports
    new_stage = StageRecord(
        id=new_id(), run_id=run.id, stage_id="s2", stage_name="S2", stage_number=2, execution_group=2
    )
    with CaptureQueriesContext(connection) as ctx, persistence.atomic():
        assert persistence.update_stage(stage.id, {"status": Status.COMPLETED}, NOW) == 0  # version not known yet
        jobs.complete(job_id, NOW)
        persistence.insert_stages([new_stage], NOW)
        jobs.enqueue([NewJob(run_id=run.id, workflow_id="wf", stage_id="s2")], NOW)
        persistence.append_events(
            [{"type": "stage:completed", "workflow_run_id": run.id, "timestamp": NOW.isoformat()}], "test"
        )
        assert _statements(ctx) == []  # nothing sent yet
    statements = _statements(ctx)
    assert len(statements) == 1
    assert statements[0].startswith("WITH ")
    assert WorkflowStage.objects.get(pk=stage.id).status == Status.COMPLETED
    assert WorkflowStage.objects.get(pk=new_stage.id).status == Status.PENDING
    assert WorkflowJob.objects.get(pk=job_id).status == Status.COMPLETED
    assert WorkflowJob.objects.filter(run_id=run.id, stage_id="s2", status=Status.PENDING).count() == 1
    assert list(OutboxEvent.objects.filter(run_id=run.id).values_list("sequence", "event_type")) == [
        (1, "stage:completed")
    ]
    assert WorkflowRun.objects.get(pk=run.id).event_seq == 1


def test_a_read_sees_the_writes_queued_before_it(ports):
    persistence, jobs, run, stage, job_id = ports
    with persistence.atomic():
        persistence.update_stage(stage.id, {"status": Status.RUNNING}, NOW)
        assert persistence.get_stages(run.id)[0].status == Status.RUNNING
        jobs.complete(job_id, NOW)
        assert jobs.get_job(job_id).status == Status.COMPLETED


def test_two_writes_to_one_row_are_both_applied(ports):
    persistence, _, _, stage, _ = ports
    with CaptureQueriesContext(connection) as ctx, persistence.atomic():
        persistence.update_stage(stage.id, {"status": Status.RUNNING}, NOW)
        persistence.update_stage(stage.id, {"error_message": "second"}, NOW)
    assert len(_statements(ctx)) == 2  # the second write flushed the first rather than share its statement
    row = WorkflowStage.objects.get(pk=stage.id)
    assert (row.status, row.error_message, row.version) == (Status.RUNNING, "second", 3)


def _complete_stage_then_a_missing_one(persistence, stage):
    with persistence.atomic():
        persistence.update_stage(stage.id, {"status": Status.COMPLETED}, NOW)
        persistence.update_stage("no-such-stage", {"status": Status.COMPLETED}, NOW)


def _complete_job_then_events_of_a_missing_run(persistence, jobs, job_id):
    with persistence.atomic():
        jobs.complete(job_id, NOW)
        persistence.append_events(
            [{"type": "stage:completed", "workflow_run_id": "no-such-run", "timestamp": NOW.isoformat()}], "x"
        )


def _complete_stage_then_raise(persistence, stage):
    with persistence.atomic():
        persistence.update_stage(stage.id, {"status": Status.COMPLETED}, NOW)
        raise RuntimeError("boom")


def test_a_missing_row_raises_inside_the_block_and_rolls_everything_back(ports):
    persistence, jobs, _, stage, job_id = ports
    with pytest.raises(WorkflowEngineError, match="does not exist"):
        _complete_stage_then_a_missing_one(persistence, stage)
    assert WorkflowStage.objects.get(pk=stage.id).status == Status.PENDING

    with pytest.raises(RunNotFound):
        _complete_job_then_events_of_a_missing_run(persistence, jobs, job_id)
    assert WorkflowJob.objects.get(pk=job_id).status == Status.PENDING


def test_an_error_in_the_block_discards_the_queued_writes(ports):
    persistence, _, _, stage, _ = ports
    with pytest.raises(RuntimeError):
        _complete_stage_then_raise(persistence, stage)
    assert WorkflowStage.objects.get(pk=stage.id).status == Status.PENDING
    with persistence.atomic():  # the next block starts with an empty queue
        pass
    assert WorkflowStage.objects.get(pk=stage.id).status == Status.PENDING


def test_a_cancelled_job_stays_cancelled_when_its_completion_is_deferred(ports):
    persistence, jobs, run, _, job_id = ports
    jobs.cancel_by_run(run.id, NOW)
    with persistence.atomic():
        jobs.complete(job_id, NOW)
    assert WorkflowJob.objects.get(pk=job_id).status == Status.CANCELLED


@pytest.fixture
def harness():
    flows.reset()
    yield OrmKernel([flows.diamond])
    flows.reset()


def test_an_eagerly_continued_diamond_costs_at_most_six_statements_a_stage(harness):
    run_ids = [harness.start("diamond", {"value": n}) for n in range(5)]
    with CaptureQueriesContext(connection) as ctx:
        totals = drain(harness.kernel, eager=True)
    assert totals.completed == 20
    assert {harness.run(r).status for r in run_ids} == {Status.COMPLETED}
    # dequeue + the drain's final empty dequeue and run claim included
    assert len(_statements(ctx)) <= 6 * 20


def test_a_continued_stage_that_completes_the_run_is_few_statements(harness):
    harness.start("diamond", {"value": 1})
    outcome = run_job(harness.kernel, harness.jobs.dequeue("w", harness.clock.now()), continue_as="w")  # a -> b
    b = outcome.continuation
    c = harness.jobs.dequeue("w2", harness.clock.now())
    run_job(harness.kernel, b.job, continue_as="w", started=b)  # b: c still running, no-op transition
    d = run_job(harness.kernel, c, continue_as="w2").continuation  # c: starts d for w2
    # d: lock the run; then one statement: the outcome (stage + job), and the run's completion carried by the
    # UPDATE that reserves its events' sequences (the run row was locked at the version the completion checks)
    with CaptureQueriesContext(connection) as ctx:
        assert run_job(harness.kernel, d.job, continue_as="w2", started=d).outcome == "completed"
    sent = _statements(ctx)
    assert len(sent) == 2, sent
    assert "FOR UPDATE" in sent[0]
    run = WorkflowRun.objects.get(pk=d.run.id)
    assert (run.status, run.output) == (Status.COMPLETED, harness.run(d.run.id).output)
    sequences = list(OutboxEvent.objects.filter(run_id=run.id).order_by("sequence").values_list("sequence", flat=True))
    assert sequences == list(range(1, run.event_seq + 1))
    last = OutboxEvent.objects.filter(run_id=run.id).latest("sequence")
    assert last.event_type == "workflow:completed"


def test_a_guarded_update_of_a_row_locked_at_another_version_runs_at_once_and_reports_it_stale(ports):
    from django.db import transaction

    from django_workflow_engine.core.errors import StaleVersionError

    persistence, _jobs, run, _stage, _job_id = ports
    with transaction.atomic(), persistence.atomic():
        locked = persistence.lock_run(run.id)
        with pytest.raises(StaleVersionError):  # raised here, not at the flush: the lock was at another version
            persistence.update_run(run.id, {"priority": 9}, NOW, expected_version=locked.version + 1)
    with persistence.atomic():
        locked = persistence.lock_run(run.id)
        with CaptureQueriesContext(connection) as ctx:
            assert persistence.update_run(run.id, {"priority": 9}, NOW, expected_version=locked.version) == (
                locked.version + 1
            )
        assert _statements(ctx) == []  # queued: it cannot be stale under the lock
    assert WorkflowRun.objects.get(pk=run.id).priority == 9
