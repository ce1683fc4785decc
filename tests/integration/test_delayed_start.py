"""Delayed starts through the public API: ``engine.start(..., start_at=..., delay=...)`` (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from django_workflow_engine import engine
from django_workflow_engine.errors import InvalidInput, InvalidStartTime
from django_workflow_engine.models import WorkflowJob, WorkflowRun, WorkflowStage

pytestmark = pytest.mark.django_db


def _run(run_id):
    return WorkflowRun.objects.get(pk=run_id)


def test_a_delayed_run_is_created_now_and_its_first_group_runs_when_due(fake_clock_engine, fake_clock):
    t0 = fake_clock.now()
    run = fake_clock_engine.start("diamond", {"value": 1}, delay=90)
    row = _run(run.id)
    assert row.scheduled_at == t0 + timedelta(seconds=90)
    assert row.created_at == t0
    assert row.status == "RUNNING"
    job = WorkflowJob.objects.get(run_id=run.id)
    assert job.stage_id == "a"
    assert job.status == "PENDING"
    assert job.available_at == row.scheduled_at

    fake_clock.advance(seconds=89)
    fake_clock_engine.run_until_idle()
    assert WorkflowStage.objects.get(run_id=run.id, stage_id="a").status == "PENDING"  # not yet due

    fake_clock.advance(seconds=1)
    fake_clock_engine.run_until_idle()
    row = _run(run.id)
    assert row.status == "COMPLETED"
    assert WorkflowStage.objects.get(run_id=run.id, stage_id="a").started_at == t0 + timedelta(seconds=90)


def test_start_at_an_aware_datetime_in_another_zone(fake_clock_engine, fake_clock):
    due = (fake_clock.now() + timedelta(hours=2)).astimezone(ZoneInfo("Europe/Berlin"))
    run = fake_clock_engine.start("diamond", {"value": 1}, start_at=due)
    assert _run(run.id).scheduled_at == due
    fake_clock.advance(hours=2, seconds=-1)
    fake_clock_engine.run_until_idle()
    assert _run(run.id).status == "RUNNING"
    fake_clock.advance(seconds=1)
    fake_clock_engine.run_until_idle()
    assert _run(run.id).status == "COMPLETED"


def test_a_time_not_in_the_future_starts_at_once(fake_clock_engine, fake_clock):
    past = fake_clock_engine.start("diamond", {"value": 1}, start_at=fake_clock.now() - timedelta(days=1))
    zero = fake_clock_engine.start("diamond", {"value": 1}, delay=timedelta(0))
    assert _run(past.id).scheduled_at is None
    assert _run(zero.id).scheduled_at is None
    fake_clock_engine.run_until_idle()
    assert _run(past.id).status == _run(zero.id).status == "COMPLETED"


def test_idempotency_applies_to_a_delayed_start(fake_clock_engine):
    first = fake_clock_engine.start("diamond", {"value": 1}, delay=60, idempotency_key="nightly-1")
    again = fake_clock_engine.start("diamond", {"value": 1}, delay=600, idempotency_key="nightly-1")
    assert again.id == first.id
    assert WorkflowRun.objects.count() == 1


def test_cancel_before_it_starts(fake_clock_engine, fake_clock):
    run = fake_clock_engine.start("diamond", {"value": 1}, delay=60)
    assert fake_clock_engine.cancel(run.id, reason="not needed") is True
    fake_clock.advance(seconds=120)
    fake_clock_engine.run_until_idle()
    assert _run(run.id).status == "CANCELLED"
    assert not WorkflowStage.objects.filter(run_id=run.id, started_at__isnull=False).exists()
    assert not WorkflowJob.objects.filter(run_id=run.id, status="PENDING").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start_at": datetime(2030, 1, 1, 2, 0)}, "start_at must be timezone-aware"),
        ({"delay": -5}, "delay must be a finite number of seconds >= 0"),
        ({"delay": float("nan")}, "delay must be a finite number of seconds >= 0"),
        ({"delay": timedelta(seconds=-1)}, "delay must be a finite number of seconds >= 0"),
        ({"delay": "10"}, "delay must be seconds"),
        ({"delay": True}, "delay must be seconds"),
        ({"start_at": "2030-01-01T00:00:00Z"}, "start_at must be a datetime"),
        ({"start_at": datetime(2030, 1, 1, tzinfo=UTC), "delay": 5}, "give one of them, not both"),
        ({"delay": timedelta(days=4000)}, "over the limit"),
    ],
)
def test_bad_start_time_is_refused_and_nothing_is_written(kwargs, message):
    with pytest.raises(InvalidStartTime, match=message):
        engine.start("diamond", {"value": 1}, **kwargs)
    assert not WorkflowRun.objects.exists()
    assert not WorkflowJob.objects.exists()


def test_input_is_validated_when_the_delayed_run_is_created():
    with pytest.raises(InvalidInput):
        engine.start("diamond", {"value": "not a number"}, delay=3600)
    assert not WorkflowRun.objects.exists()


def test_a_delayed_run_of_a_limited_workflow_holds_no_slot_before_it_is_due(fake_clock_engine, fake_clock):
    # whole-two: at most two runs at once. Two runs delayed by an hour must not keep a run started now waiting.
    later = [fake_clock_engine.start("whole-two", {"customer": "c", "n": i}, delay=3600) for i in range(2)]
    assert {_run(r.id).status for r in later} == {"PENDING"}  # waiting for their time, not holding a slot
    now = fake_clock_engine.start("whole-two", {"customer": "c", "n": 9})
    assert _run(now.id).status == "RUNNING"
    fake_clock_engine.run_until_idle()
    assert _run(now.id).status == "COMPLETED"
    assert {_run(r.id).status for r in later} == {"PENDING"}  # a freed slot does not start them early
    assert not WorkflowStage.objects.filter(run_id__in=[r.id for r in later]).exists()

    blocker = [fake_clock_engine.start("whole-two", {"customer": "c", "n": 10 + i}) for i in range(2)]
    fake_clock.advance(seconds=3600)  # due now, both slots taken: they wait like any run
    fake_clock_engine.run_until_idle()
    assert {_run(r.id).status for r in [*blocker, *later]} == {"COMPLETED"}
    assert all(_run(r.id).started_at >= fake_clock.now() for r in later)
