"""Schedules fired by the maintenance tick, on a fake clock (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from django_workflow_engine.hosts.maintenance import run_maintenance_tick
from django_workflow_engine.hosts.schedules import fire_due_schedules
from django_workflow_engine.models import WorkflowRun, WorkflowSchedule

pytestmark = pytest.mark.django_db


@pytest.fixture
def kernel(fake_clock_engine):
    return fake_clock_engine.kernel


def _schedule(**fields):
    defaults = {"name": "nightly", "workflow_id": "diamond", "input": {"value": 3}, "catchup": "all"}
    return WorkflowSchedule.objects.create(**{**defaults, **fields})


def _fire_times(schedule):
    return sorted(r.metadata["fire_time"] for r in schedule.runs())


def test_first_pass_sets_the_next_fire_time_then_one_run_per_fire_time(kernel, fake_clock):
    fake_clock.set(datetime(2026, 5, 1, 12, 0, 30, tzinfo=UTC))
    schedule = _schedule(cron="*/10 * * * *")
    assert fire_due_schedules(kernel).fired == 0
    schedule.refresh_from_db()
    assert schedule.next_fire_at == datetime(2026, 5, 1, 12, 10, tzinfo=UTC)

    fake_clock.set(datetime(2026, 5, 1, 12, 10, 2, tzinfo=UTC))
    assert fire_due_schedules(kernel).fired == 1
    assert fire_due_schedules(kernel).fired == 0  # nothing new is due
    schedule.refresh_from_db()
    (run,) = schedule.runs()
    assert schedule.last_run_id == run.id
    assert schedule.last_fire_at == datetime(2026, 5, 1, 12, 10, tzinfo=UTC)
    assert schedule.next_fire_at == datetime(2026, 5, 1, 12, 20, tzinfo=UTC)
    assert run.input == {"value": 3}
    assert run.metadata == {"schedule": "nightly", "fire_time": "2026-05-01T12:10:00+00:00"}


def test_the_run_executes_in_the_same_tick(kernel, fake_clock, fake_clock_engine):
    fake_clock.set(datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC))
    _schedule(interval_seconds=60, next_fire_at=datetime(2026, 5, 1, 12, 0, tzinfo=UTC))
    result = run_maintenance_tick(kernel)
    assert result.schedules_fired == 1
    assert not result.errors
    fake_clock_engine.run_until_idle()
    assert WorkflowRun.objects.get().status == "COMPLETED"


def test_firing_a_fire_time_again_returns_the_same_run(kernel, fake_clock):
    """A process that crashed after creating the run, before moving next_fire_at: the next one finds the key."""
    at = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    fake_clock.set(at)
    schedule = _schedule(interval_seconds=60, next_fire_at=at)
    fire_due_schedules(kernel)
    WorkflowSchedule.objects.filter(pk=schedule.pk).update(next_fire_at=at)  # as if the update was lost
    fire_due_schedules(kernel)
    assert WorkflowRun.objects.count() == 1


@pytest.mark.parametrize(
    ("policy", "limit", "expected"),
    [
        ("skip", 10, ["2026-05-01T15:00:00+00:00"]),  # only the one found on time
        ("latest", 10, ["2026-05-01T15:00:00+00:00"]),
        ("all", 10, [f"2026-05-01T{h}:00:00+00:00" for h in (10, 11, 12, 13, 14, 15)]),
        ("all", 2, ["2026-05-01T14:00:00+00:00", "2026-05-01T15:00:00+00:00"]),
    ],
)
def test_catch_up_after_downtime(kernel, fake_clock, policy, limit, expected):
    fake_clock.set(datetime(2026, 5, 1, 15, 0, 20, tzinfo=UTC))
    schedule = _schedule(
        cron="0 * * * *", catchup=policy, catchup_limit=limit, next_fire_at=datetime(2026, 5, 1, 10, tzinfo=UTC)
    )
    fire_due_schedules(kernel)
    assert _fire_times(schedule) == expected
    schedule.refresh_from_db()
    assert schedule.next_fire_at == datetime(2026, 5, 1, 16, tzinfo=UTC)


def test_skip_fires_nothing_when_even_the_latest_fire_time_is_late(kernel, fake_clock):
    fake_clock.set(datetime(2026, 5, 1, 15, 30, tzinfo=UTC))
    schedule = _schedule(cron="0 * * * *", catchup="skip", next_fire_at=datetime(2026, 5, 1, 10, tzinfo=UTC))
    fire_due_schedules(kernel)
    assert _fire_times(schedule) == []
    schedule.refresh_from_db()
    assert schedule.next_fire_at == datetime(2026, 5, 1, 16, tzinfo=UTC)


def test_a_disabled_schedule_does_not_fire(kernel, fake_clock):
    fake_clock.set(datetime(2026, 5, 1, 12, 0, tzinfo=UTC))
    _schedule(interval_seconds=60, enabled=False, next_fire_at=datetime(2026, 5, 1, 11, tzinfo=UTC))
    assert fire_due_schedules(kernel).fired == 0
    assert not WorkflowRun.objects.exists()


def test_an_input_the_workflow_rejects_loses_that_fire_time_not_the_schedule(kernel, fake_clock, caplog):
    at = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    fake_clock.set(at)
    schedule = _schedule(interval_seconds=60, input={"value": "x"}, next_fire_at=at)
    assert fire_due_schedules(kernel).fired == 0
    assert "the run for 2026-05-01T12:00:00+00:00 was not started" in caplog.text
    schedule.refresh_from_db()
    assert schedule.next_fire_at == at + timedelta(seconds=60)
    assert not WorkflowRun.objects.exists()


def _walk(kernel, fake_clock, start, end, step=timedelta(minutes=15)):
    """Tick every ``step`` (a maintenance loop) from ``start`` to ``end``."""
    fake_clock.set(start)
    while fake_clock.now() <= end:
        fire_due_schedules(kernel)
        fake_clock.advance(step)


def test_dst_spring_forward_berlin_daily_0230_fires_once_at_0300(kernel, fake_clock):
    """2026-03-29 02:00 CET -> 03:00 CEST: 02:30 does not exist that day; cronsim fires at 03:00 (once)."""
    schedule = _schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    _walk(kernel, fake_clock, datetime(2026, 3, 27, 12, tzinfo=UTC), datetime(2026, 3, 30, 12, tzinfo=UTC))
    assert _fire_times(schedule) == [
        "2026-03-28T01:30:00+00:00",  # 02:30 CET
        "2026-03-29T01:00:00+00:00",  # 03:00 CEST, the first instant after the gap
        "2026-03-30T00:30:00+00:00",  # 02:30 CEST
    ]


def test_dst_fall_back_berlin_daily_0230_fires_once(kernel, fake_clock):
    """2026-10-25 03:00 CEST -> 02:00 CET: 02:30 happens twice; a fixed-hour expression fires at the first."""
    schedule = _schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    _walk(kernel, fake_clock, datetime(2026, 10, 23, 12, tzinfo=UTC), datetime(2026, 10, 26, 12, tzinfo=UTC))
    assert _fire_times(schedule) == [
        "2026-10-24T00:30:00+00:00",  # 02:30 CEST
        "2026-10-25T00:30:00+00:00",  # the first 02:30 (CEST); not again at 02:30 CET
        "2026-10-26T01:30:00+00:00",  # 02:30 CET
    ]


def test_dst_fall_back_hourly_fires_every_real_hour(kernel, fake_clock):
    """A wildcard hour follows elapsed time through the overlap: 25 runs on the 25-hour day, none doubled."""
    schedule = _schedule(cron="0 * * * *", timezone="Europe/Berlin")
    day_start = datetime(2026, 10, 24, 22, tzinfo=UTC)  # 2026-10-25 00:00 CEST
    _walk(kernel, fake_clock, day_start - timedelta(minutes=1), datetime(2026, 10, 25, 22, 14, tzinfo=UTC))
    times = _fire_times(schedule)
    assert len(times) == len(set(times)) == 25
    assert times[0] == "2026-10-24T22:00:00+00:00"
    assert times[-1] == "2026-10-25T22:00:00+00:00"  # 23:00 CET
    assert "2026-10-25T00:00:00+00:00" in times  # 02:00 CEST
    assert "2026-10-25T01:00:00+00:00" in times  # 02:00 CET


def test_dst_spring_forward_hourly_has_no_run_for_the_missing_hour(kernel, fake_clock):
    schedule = _schedule(cron="0 * * * *", timezone="Europe/Berlin")
    _walk(kernel, fake_clock, datetime(2026, 3, 28, 22, 59, tzinfo=UTC), datetime(2026, 3, 29, 21, 14, tzinfo=UTC))
    times = _fire_times(schedule)
    assert len(times) == len(set(times)) == 23  # the 23-hour day


@pytest.mark.django_db(transaction=True)  # the serverless entry point closes stale connections first
def test_the_serverless_maintenance_tick_fires_schedules(kernel, fake_clock):
    from django_workflow_engine.hosts.serverless import run_maintenance_tick as serverless_tick

    at = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    fake_clock.set(at)
    schedule = _schedule(interval_seconds=300, next_fire_at=at)
    assert serverless_tick(kernel=kernel).schedules_fired == 1
    assert _fire_times(schedule) == ["2026-05-01T12:00:00+00:00"]


def test_a_fire_time_another_process_is_firing_is_left_to_it(kernel, fake_clock):
    """Its idempotency key is held "in progress" by another maintenance process: no second run, and
    next_fire_at is left for that process to move."""
    from django_workflow_engine.hosts.schedules import fire_key

    at = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    fake_clock.set(at)
    schedule = _schedule(interval_seconds=60, next_fire_at=at)
    claim = kernel.deps.persistence.acquire_idempotency_key(fire_key("nightly", at), "run.create", at, 600)
    assert claim.state == "acquired"
    assert fire_due_schedules(kernel).fired == 0
    schedule.refresh_from_db()
    assert schedule.next_fire_at == at
    assert not WorkflowRun.objects.exists()
