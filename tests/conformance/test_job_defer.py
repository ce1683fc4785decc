"""JobQueue.defer (an AI rate limit): due later as the same attempt, with its wait reason; in-memory and ORM."""

from __future__ import annotations

from datetime import timedelta

import pytest

from django_workflow_engine.kernel.records import Status
from tests.conformance.conftest import orm_adapters
from tests.conformance.test_job_queue import Bell

pytestmark = pytest.mark.django_db


@pytest.fixture
def q(adapters):
    adapters.run("r1")
    return adapters


def test_defer_makes_the_job_due_later_without_using_an_attempt(q):
    job_id = q.job("r1", max_attempts=3)
    assert q.jobs.dequeue("w", q.now()).attempt == 1
    until = q.now() + timedelta(seconds=30)
    q.jobs.defer(job_id, until, "rate limit gpt-4o-mini until 12:00:30", q.now())
    job = q.jobs.get_job(job_id)
    assert (job.status, job.attempt, job.available_at, job.worker_id, job.locked_at) == (
        Status.PENDING,
        0,
        until,
        None,
        None,
    )
    assert job.wait_reason == "rate limit gpt-4o-mini until 12:00:30"
    assert q.jobs.dequeue("w", q.now()) is None  # not due yet
    q.clock.advance(seconds=30)
    again = q.jobs.dequeue("w", q.now())
    assert (again.id, again.attempt) == (job_id, 1)  # the same first attempt


def test_a_retry_after_a_deferral_clears_the_wait_reason(q):
    job_id = q.job("r1")
    q.jobs.dequeue("w", q.now())
    q.jobs.defer(job_id, q.now(), "rate limit m until 12:00:00", q.now())
    q.jobs.dequeue("w", q.now())
    q.jobs.fail(job_id, "boom", q.now() + timedelta(seconds=2), q.now())
    job = q.jobs.get_job(job_id)
    assert (job.status, job.wait_reason, job.last_error) == (Status.PENDING, None, "boom")


def test_defer_leaves_a_job_that_is_not_running_alone(q):
    job_id = q.job("r1")
    q.jobs.defer(job_id, q.now() + timedelta(seconds=5), "rate limit m until 12:00:05", q.now())
    job = q.jobs.get_job(job_id)
    assert (job.status, job.available_at, job.wait_reason) == (Status.PENDING, q.now(), None)
    q.jobs.dequeue("w", q.now())
    q.jobs.cancel_by_run("r1", q.now(), include_running=True)
    q.jobs.defer(job_id, q.now() + timedelta(seconds=5), "x", q.now())
    assert q.jobs.get_job(job_id).status == Status.CANCELLED


def test_defer_rings_the_doorbell_for_when_the_job_is_due(django_capture_on_commit_callbacks):
    bell = Bell()
    q = orm_adapters(on_enqueue=bell)
    q.run("r1")
    with django_capture_on_commit_callbacks(execute=True):
        job_id = q.job("r1")
        q.jobs.dequeue("w", q.now())
        until = q.now() + timedelta(seconds=7)
        q.jobs.defer(job_id, until, "rate limit m until later", q.now())
    assert bell.calls == [([job_id], None), ([job_id], until)]
