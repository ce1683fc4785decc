"""Schedules declared in code (``WorkflowBuilder.schedule`` and ``WORKFLOW_ENGINE["SCHEDULES"]``) synced to rows
idempotently, an operator's change kept."""

from __future__ import annotations

import pytest

from django_workflow_engine import WorkflowBuilder
from django_workflow_engine.core.schedule import InvalidSchedule
from django_workflow_engine.hosts.maintenance import run_maintenance_tick
from django_workflow_engine.hosts.schedules import sync_declared_schedules
from django_workflow_engine.hosts.wiring import default_kernel
from django_workflow_engine.models import WorkflowSchedule
from django_workflow_engine.testing import registered_workflows
from tests.flows import Numbers, stage_a

pytestmark = pytest.mark.django_db

NIGHTLY = {
    "name": "nightly",
    "workflow": "diamond",
    "cron": "0 2 * * *",
    "timezone": "Europe/Berlin",
    "input": {"value": 1},
}


@pytest.fixture
def declared(settings):
    def set_(*items):
        settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, "SCHEDULES": list(items)}

    return set_


def _sync():
    return sync_declared_schedules(default_kernel(None))


def test_created_once_then_left_alone(declared):
    declared(NIGHTLY)
    assert _sync().created == 1
    again = _sync()
    assert (again.created, again.updated, again.kept) == (0, 0, [])
    row = WorkflowSchedule.objects.get()
    assert (row.workflow_id, row.cron, row.timezone, row.input) == (
        "diamond",
        "0 2 * * *",
        "Europe/Berlin",
        {"value": 1},
    )
    assert row.declared["cron"] == "0 2 * * *"


def test_a_code_change_applies_to_a_row_nobody_changed(declared):
    declared(NIGHTLY)
    _sync()
    declared({**NIGHTLY, "cron": "0 3 * * *"})
    assert _sync().updated == 1
    row = WorkflowSchedule.objects.get()
    assert row.cron == "0 3 * * *"
    assert row.declared["cron"] == "0 3 * * *"


def test_an_operator_change_wins_over_the_code(declared, caplog):
    declared(NIGHTLY)
    _sync()
    row = WorkflowSchedule.objects.get()
    row.cron, row.enabled = "15 4 * * *", False
    row.save()
    declared({**NIGHTLY, "cron": "0 3 * * *"})
    result = _sync()
    assert result.kept == ["nightly"]
    row.refresh_from_db()
    assert (row.cron, row.enabled) == ("15 4 * * *", False)
    assert "changed in the admin" in caplog.text
    # Deleting the row hands the schedule back to code.
    row.delete()
    _sync()
    assert WorkflowSchedule.objects.get().cron == "0 3 * * *"


def test_a_row_made_in_the_admin_is_not_taken_over(declared):
    WorkflowSchedule.objects.create(name="nightly", workflow_id="diamond", interval_seconds=60, input={"value": 9})
    declared(NIGHTLY)
    assert _sync().kept == ["nightly"]
    assert WorkflowSchedule.objects.get().interval_seconds == 60


def test_declared_on_the_workflow_and_synced_by_the_maintenance_tick():
    workflow = (
        WorkflowBuilder("sched-wf", "Scheduled", input=Numbers)
        .pipe(stage_a)
        .schedule("every-5-min", cron="*/5 * * * *", input={"value": 2}, catchup="latest")
        .build()
    )
    assert [s.name for s in workflow.schedules] == ["every-5-min"]
    with registered_workflows(workflow):
        result = run_maintenance_tick()
    assert not result.errors
    row = WorkflowSchedule.objects.get(name="every-5-min")
    assert (row.workflow_id, row.catchup, row.input) == ("sched-wf", "latest", {"value": 2})
    assert row.next_fire_at is not None  # the same tick gave it its first fire time


@pytest.mark.parametrize(
    ("kwargs", "field", "text"),
    [
        ({"cron": "61 * * * *"}, "cron", "is not a cron expression"),
        ({"interval_seconds": -1}, "interval_seconds", "from 1 to"),
        ({"cron": "* * * * *", "interval_seconds": 5}, "cron", "one of them"),
        ({"cron": "* * * * *", "timezone": "Nowhere/City"}, "timezone", "not a known IANA timezone"),
        ({"cron": "* * * * *", "catchup": "some"}, "catchup", "skip, latest, all"),
        ({"cron": "* * * * *", "input": {"value": "x"}}, "input", "schedule 'bad' of workflow 'sched-bad'"),
    ],
)
def test_a_bad_declaration_fails_at_build_naming_the_field(kwargs, field, text):
    builder = WorkflowBuilder("sched-bad", "Bad", input=Numbers).pipe(stage_a)
    with pytest.raises(InvalidSchedule, match=text) as info:
        builder.schedule("bad", **{"input": {"value": 1}, **kwargs}).build()
    assert info.value.field == field


def test_a_bad_setting_names_its_index(declared):
    declared(NIGHTLY, {"name": "x", "workflow": "diamond", "cron": "nope"})
    with pytest.raises(InvalidSchedule, match=r'SCHEDULES"\]\[1\]\.cron'):
        _sync()
    assert not WorkflowSchedule.objects.exists()


def test_system_checks_report_bad_schedule_settings(declared):
    from django_workflow_engine.checks import check_schedules

    declared(
        {"name": "x", "workflow": "diamond", "cron": "nope"},
        {"name": "y", "workflow": "missing", "cron": "* * * * *"},
        {"name": "z", "workflow": "diamond", "cron": "* * * * *", "input": {"value": "q"}},
        NIGHTLY,
        NIGHTLY,
    )
    ids = sorted(e.id.rsplit(".", 1)[1] for e in check_schedules())
    assert ids == ["E050", "E051", "E052", "E053"]
