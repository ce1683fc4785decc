"""The server-drawn SVGs and the formatting helpers (no database)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

from django.utils import timezone

from django_workflow_engine.admin.charts import daily_cost_chart
from django_workflow_engine.admin.common import fmt_cost, fmt_duration
from django_workflow_engine.admin.timeline import build_rows, render_timeline
from tests.flows import diamond


def t(seconds: float) -> datetime:
    return datetime(2026, 1, 1, 12, 0, tzinfo=timezone.get_fixed_timezone(0)) + timedelta(seconds=seconds)


def stage(stage_id, group, number, status, start=None, end=None, suspended=None, next_poll=None, name=None):
    return SimpleNamespace(
        stage_id=stage_id,
        stage_name=name or stage_id.upper(),
        execution_group=group,
        stage_number=number,
        status=status,
        started_at=start,
        completed_at=end,
        suspended_state=suspended,
        next_poll_at=next_poll,
    )


RUN = SimpleNamespace(started_at=t(0), completed_at=None)


def test_plan_order_parallel_groups_and_unstarted_stages():
    stages = [stage("a", 1, 1, "COMPLETED", t(0), t(2)), stage("b", 2, 2, "RUNNING", t(2))]
    rows = build_rows(stages, diamond.execution_plan(), {})
    assert [(r.stage_id, r.group, r.status) for r in rows] == [
        ("a", 1, "COMPLETED"),
        ("b", 2, "RUNNING"),
        ("c", 2, "NOT STARTED"),
        ("d", 3, "NOT STARTED"),
    ]
    svg = str(render_timeline(RUN, rows, now=t(4)))
    assert svg.startswith("<svg")
    assert svg.count('class="dwe-bar"') == 2
    assert "Group 2: 2 stages in parallel" in svg
    assert "not started" in svg
    assert "so far" in svg  # b is still running


def test_suspended_wait_is_hatched_from_the_suspension_event():
    stages = [
        stage("a", 1, 1, "COMPLETED", t(0), t(1)),
        stage("b", 2, 2, "SUSPENDED", t(1), None, suspended={"batch": "x"}, next_poll=t(600)),
        stage("c", 2, 3, "COMPLETED", t(1), t(30), suspended={"batch": "y"}),
    ]
    rows = build_rows(stages, diamond.execution_plan(), {"b": t(2), "c": t(3)})
    svg = str(render_timeline(RUN, rows, now=t(60)))
    assert svg.count('class="dwe-wait"') == 2
    assert "still waiting" in svg
    assert "next poll 2026-01-01 12:10:00" in svg


def test_unregistered_workflow_falls_back_to_the_records():
    stages = [stage("x", 1, 1, "COMPLETED", t(0), t(1)), stage("y", 1, 2, "FAILED", t(0), t(2))]
    rows = build_rows(stages, None, {})
    assert [(r.stage_id, r.group) for r in rows] == [("x", 1), ("y", 1)]
    assert "2 stages in parallel" in str(render_timeline(RUN, rows, now=t(3)))


def test_nothing_started_yet():
    rows = build_rows([], diamond.execution_plan(), {})
    assert "No stage has started yet." in str(render_timeline(SimpleNamespace(started_at=None), rows))
    assert "no stages" in str(render_timeline(RUN, [], now=t(1)))


def test_daily_cost_chart():
    days = [(date(2026, 1, d), Decimal(d) / 100) for d in range(1, 11)]
    svg = str(daily_cost_chart(days))
    assert svg.count('class="dwe-day"') == 10
    assert "2026-01-10: $0.1000" in svg
    assert "$0.1000" in svg  # the axis peak
    assert 'class="dwe-day"' in str(daily_cost_chart([(date(2026, 1, 1), Decimal(0))]))


def test_formatting():
    assert fmt_cost(None) == "—"
    assert fmt_cost(Decimal(0)) == "$0"
    assert fmt_cost(Decimal("0.000125")) == "$0.000125"
    assert fmt_cost(Decimal("12.5")) == "$12.5000"
    assert fmt_duration(None) == "—"
    assert fmt_duration(850) == "850 ms"
    assert fmt_duration(12_300) == "12.3 s"
    assert fmt_duration(245_000) == "4 min 5 s"
    assert fmt_duration(7_380_000) == "2 h 3 min"
    assert fmt_duration(3 * 86_400_000) == "3 d 0 h"
