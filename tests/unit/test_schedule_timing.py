"""Schedule arithmetic without Django: timings, catch-up choices, long downtimes, bad values."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from django_workflow_engine.core.schedule import InvalidSchedule, ScheduleSpec, Timing, due_fire_times

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


def test_interval_fire_times_are_whole_multiples_every_process_agrees_on():
    timing = Timing(interval_seconds=90)
    a = timing.preview(NOW, 3)
    b = timing.preview(NOW + timedelta(seconds=1), 3)
    assert a == b
    assert [(t - a[0]).total_seconds() for t in a] == [0, 90, 180]


def test_a_month_of_downtime_on_an_every_second_schedule_is_cheap():
    started = time.perf_counter()
    plan = due_fire_times(Timing(interval_seconds=1), NOW - timedelta(days=30), NOW, "all", 10)
    assert time.perf_counter() - started < 0.5
    assert len(plan.fire) == 10
    assert plan.fire[-1] == NOW
    assert plan.missed
    assert plan.next_fire_at == NOW + timedelta(seconds=1)


def test_ten_years_of_downtime_on_a_daily_cron_is_cheap():
    started = time.perf_counter()
    plan = due_fire_times(Timing(cron="0 3 * * *"), NOW - timedelta(days=3650), NOW, "latest", 10)
    assert time.perf_counter() - started < 0.5
    assert plan.fire == [datetime(2026, 5, 1, 3, tzinfo=UTC)]


def test_nothing_due_before_next_fire_at():
    plan = due_fire_times(Timing(cron="0 * * * *"), NOW + timedelta(hours=1), NOW, "all", 10)
    assert plan.fire == []
    assert not plan.missed


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"cron": "a b c d e"}, "cron"),
        ({"cron": "* * * *"}, "cron"),
        ({"interval_seconds": 0}, "interval_seconds"),
        ({"interval_seconds": 1.5}, "interval_seconds"),
        ({"interval_seconds": True}, "interval_seconds"),
        ({}, "cron"),
        ({"cron": "* * * * *", "timezone": ""}, "timezone"),
        ({"cron": "* * * * *", "timezone": "Europe/Nowhere"}, "timezone"),
        ({"cron": "* * * * *", "catchup": "never"}, "catchup"),
        ({"cron": "* * * * *", "catchup_limit": 0}, "catchup_limit"),
        ({"cron": "* * * * *", "name": "has space"}, "name"),
    ],
)
def test_bad_schedules_name_the_field(kwargs, field):
    with pytest.raises(InvalidSchedule) as info:
        ScheduleSpec(**{"name": "s", "workflow_id": "w", **kwargs})
    assert info.value.field == field
