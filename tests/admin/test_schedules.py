"""The schedule admin: validation on save naming the field, the preview, "Run now", the schedule's runs; the
run list and run page show a delayed start as scheduled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse

from django_workflow_engine import engine
from django_workflow_engine.models import WorkflowRun, WorkflowSchedule

pytestmark = pytest.mark.django_db

APP = "django_workflow_engine"
ADD = reverse(f"admin:{APP}_workflowschedule_add")
CHANGELIST = reverse(f"admin:{APP}_workflowschedule_changelist")


def _form(**overrides):
    data = {
        "name": "nightly",
        "workflow_id": "diamond",
        "enabled": "on",
        "cron": "0 2 * * *",
        "interval_seconds": "",
        "timezone": "Europe/Berlin",
        "input": '{"value": 4}',
        "config": "{}",
        "priority": "5",
        "catchup": "skip",
        "catchup_limit": "10",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_add_a_schedule_sets_its_next_fire_time(admin_client_):
    response = admin_client_.post(ADD, _form())
    assert response.status_code == 302, response.content.decode()[:3000]
    schedule = WorkflowSchedule.objects.get(name="nightly")
    assert schedule.input == {"value": 4}
    assert schedule.declared is None
    assert schedule.next_fire_at is not None
    assert schedule.next_fire_at.astimezone(ZoneInfo("Europe/Berlin")).hour == 2


@pytest.mark.parametrize(
    ("overrides", "field", "text"),
    [
        ({"cron": "0 25 * * *"}, "cron", "is not a cron expression"),
        ({"cron": "", "interval_seconds": ""}, "cron", "give a cron expression or an interval"),
        ({"cron": "", "interval_seconds": "0"}, "interval_seconds", "from 1 to"),
        ({"timezone": "Mars/Olympus"}, "timezone", "is not a known IANA timezone"),
        ({"workflow_id": "nope"}, "workflow_id", "No workflow 'nope' is registered"),
        ({"input": '{"value": "four"}'}, "input", "value"),
        ({"input": "{}"}, "input", "value"),
        ({"config": '{"nope": {}}'}, "config", "nope"),
        ({"catchup": "all", "catchup_limit": "5000"}, "catchup_limit", "from 1 to 1000"),
    ],
)
def test_bad_values_are_refused_naming_the_field(admin_client_, overrides, field, text):
    response = admin_client_.post(ADD, _form(**overrides))
    assert response.status_code == 200
    form = response.context["adminform"].form
    errors = form.errors.get(field or "__all__")
    assert errors, form.errors
    assert any(text in e for e in errors), errors
    assert not WorkflowSchedule.objects.exists()


def test_change_page_previews_five_fire_times_and_lists_runs(admin_client_):
    schedule = WorkflowSchedule.objects.create(
        name="hourly", workflow_id="diamond", cron="0 * * * *", timezone="Europe/Berlin", input={"value": 1}
    )
    run = engine.run_schedule_now("hourly")
    page = admin_client_.get(reverse(f"admin:{APP}_workflowschedule_change", args=[schedule.pk])).content.decode()
    preview = page.split('class="dwe-preview"')[1].split("</ol>")[0]
    assert preview.count("<li>") == 5
    assert ":00:00 CE" in preview  # Berlin time (CET or CEST)
    assert run.short_id in page or run.id in page
    assert "run now" in page


def test_run_now_action_starts_one_run_per_schedule(admin_client_):
    WorkflowSchedule.objects.create(name="a", workflow_id="diamond", interval_seconds=3600, input={"value": 1})
    WorkflowSchedule.objects.create(name="b", workflow_id="diamond", interval_seconds=3600, input={"value": 2})
    ids = list(WorkflowSchedule.objects.values_list("pk", flat=True))
    response = admin_client_.post(CHANGELIST, {"action": "run_now", "_selected_action": ids}, follow=True)
    assert response.status_code == 200
    runs = WorkflowRun.objects.order_by("metadata__schedule")
    assert [r.metadata["schedule"] for r in runs] == ["a", "b"]
    assert [r.input for r in runs] == [{"value": 1}, {"value": 2}]
    assert all(WorkflowSchedule.objects.get(name=n).last_run_id for n in "ab")
    assert "started run" in response.content.decode()


def test_changing_the_timing_moves_the_next_fire_time(admin_client_):
    schedule = WorkflowSchedule.objects.create(
        name="n",
        workflow_id="diamond",
        interval_seconds=60,
        input={"value": 1},
        next_fire_at=datetime(2020, 1, 1, tzinfo=UTC),
    )
    url = reverse(f"admin:{APP}_workflowschedule_change", args=[schedule.pk])
    response = admin_client_.post(url, _form(name="n", cron="", interval_seconds="3600"))
    assert response.status_code == 302
    schedule.refresh_from_db()
    assert schedule.next_fire_at > datetime.now(UTC)  # not a catch-up of the old timing


def test_a_delayed_run_shows_as_scheduled(admin_client_):
    run = engine.start("diamond", {"value": 1}, delay=timedelta(hours=3))
    listing = admin_client_.get(reverse(f"admin:{APP}_workflowrun_changelist")).content.decode()
    assert "scheduled for" in listing
    filtered = admin_client_.get(reverse(f"admin:{APP}_workflowrun_changelist") + "?waiting=scheduled")
    assert run.short_id in filtered.content.decode()
    page = admin_client_.get(reverse(f"admin:{APP}_workflowrun_change", args=[run.id])).content.decode()
    assert "Scheduled: a delayed start, its first stage is due at" in page
