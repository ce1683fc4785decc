"""Retention: ``purgeruns`` and the ``RETENTION`` maintenance step delete old finished runs with everything
that belongs to them, in batches, and leave the AI cost history (costs page, ``aicosts``, AICall queries) as
it was."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core import checks
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from pydantic import BaseModel

from django_workflow_engine import WorkflowBuilder, define_stage, engine
from django_workflow_engine.adapters.deletion import delete_runs
from django_workflow_engine.core.stage import StageResult
from django_workflow_engine.hosts.maintenance import run_maintenance_tick
from django_workflow_engine.models import (
    AICall,
    IdempotencyKey,
    OutboxEvent,
    WorkflowArtifact,
    WorkflowJob,
    WorkflowLog,
    WorkflowRun,
    WorkflowStage,
)
from django_workflow_engine.ops.retention import InvalidRetention, RetentionPolicy, apply_retention, purge_runs
from django_workflow_engine.testing import registered_workflows
from tests.admin.factories import seed_runs

pytestmark = pytest.mark.django_db(transaction=True)

OLD = timezone.now() - timedelta(days=60)


class Out(BaseModel):
    text: str


@define_stage(id="write", name="Write", output=Out)
def write(ctx):
    ctx.log("INFO", "writing")
    ctx.storage.save(ctx.storage.stage_key(suffix="notes.json"), {"notes": "under the stage folder"})
    return StageResult(output=Out(text="x" * 70_000), artifacts={"report": {"pages": 3}})


keeper = WorkflowBuilder("keeper", "Keeper", output=Out).pipe(write).build()


@pytest.fixture(autouse=True)
def _workflows():
    with registered_workflows(keeper):
        yield


def _folder(run: WorkflowRun) -> Path:
    from django_workflow_engine.conf import settings

    return Path(django_settings.MEDIA_ROOT) / settings.BLOB_PREFIX / "runs" / run.workflow_type / run.id


def _engine_run(key: str, *, age: timedelta = timedelta(days=60)) -> WorkflowRun:
    run = engine.start("keeper", {}, idempotency_key=key)
    engine.run_until_idle(flush_events=False)
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    AICall.objects.create(
        created_at=timezone.now(),
        topic="t",
        call_type="text",
        model_key="m",
        model_id="m",
        cost=Decimal("0.25"),
        input_tokens=10,
        run=run,
        stage=run.stages.get(),
        workflow_id="keeper",
        stage_key="write",
        replay={"journal": {"k": "recorded"}},
    )
    WorkflowArtifact.objects.create(run=run, stage=run.stages.get(), key="summary", data={"pages": 3})
    WorkflowRun.objects.filter(pk=run.pk).update(updated_at=timezone.now() - age)
    return run


def _purge(*args: str) -> str:
    out = io.StringIO()
    call_command("purgeruns", *args, stdout=out)
    return out.getvalue()


def _cost_views() -> dict:
    """The three places costs are read from: the AICall query API, ``aicosts --format json``, the costs page."""
    out = io.StringIO()
    call_command("aicosts", "--since", "365d", "--by", "stage", "--format", "json", stdout=out)
    user = User.objects.get_or_create(username="costs", defaults={"is_staff": True, "is_superuser": True})[0]
    client = Client()
    client.force_login(user)
    today = timezone.localdate()
    page = client.get(
        reverse("admin:django_workflow_engine_aicall_costs"), {"start": today - timedelta(days=200), "end": today}
    )
    assert page.status_code == 200
    report = json.loads(out.getvalue())
    report.pop("since")  # when the command ran
    tables = {t["key"]: t["rows"] for t in page.context["tables"]}
    return {
        "totals": AICall.objects.totals(),
        "by_workflow": list(AICall.objects.by_workflow()),
        "by_stage": list(AICall.objects.by_stage()),
        "aicosts": report,
        "page_totals": page.context["totals"],
        "page_workflow": tables["workflow"],
        "page_stage": tables["stage"],
    }


def test_purge_deletes_old_finished_runs_with_their_rows_and_blobs_and_keeps_the_rest():
    old = _engine_run("old")
    young = _engine_run("young", age=timedelta(days=2))
    running = seed_runs(1, workflow_id="keeper", status="RUNNING", start=OLD)[0]
    old_folder, young_folder = _folder(old), _folder(young)
    assert sorted(p.name for p in old_folder.rglob("*") if p.is_file()) == ["notes.json", "output.json", "report.json"]
    assert WorkflowArtifact.objects.filter(run=old).exists()

    output = _purge("--older-than", "30d")

    assert "Deleted 1 run(s)" in output
    assert not WorkflowRun.objects.filter(pk=old.pk).exists()
    for model in (WorkflowStage, WorkflowJob, WorkflowLog, WorkflowArtifact):
        assert not model.objects.filter(run_id=old.pk).exists(), model
    assert not OutboxEvent.objects.filter(run_id=old.pk).exists()
    assert not IdempotencyKey.objects.filter(run_id=old.pk).exists()
    assert not old_folder.exists()
    call = AICall.objects.get(workflow_id="keeper", run=None)
    assert (call.stage_id, call.stage_key, call.cost, call.replay) == (None, "write", Decimal("0.25"), None)
    # the young run and the unfinished one are untouched, with their belongings
    assert set(WorkflowRun.objects.values_list("pk", flat=True)) == {young.pk, running.pk}
    assert OutboxEvent.objects.filter(run_id=young.pk).exists()
    assert IdempotencyKey.objects.filter(run_id=young.pk).exists()
    assert young_folder.exists()
    assert AICall.objects.get(run=young).replay is not None


def test_cost_totals_are_the_same_before_and_after_a_purge():
    seed_runs(6, workflow_id="keeper", ai_calls=3, start=OLD)
    seed_runs(3, workflow_id="other", status="FAILED", ai_calls=2, start=OLD)
    seed_runs(2, workflow_id="keeper", ai_calls=1)  # young: kept
    before = _cost_views()
    assert before["totals"]["calls"] == 6 * 3 + 3 * 2 + 2

    _purge("--older-than", "30d", "--batch-size", "4")

    assert WorkflowRun.objects.count() == 2
    assert AICall.objects.filter(run__isnull=True).count() == 6 * 3 + 3 * 2
    assert _cost_views() == before


def test_filters_by_status_and_workflow_and_batches():
    seed_runs(5, workflow_id="keeper", status="COMPLETED", start=OLD)
    failed = seed_runs(2, workflow_id="keeper", status="FAILED", start=OLD)
    other = seed_runs(3, workflow_id="other", status="COMPLETED", start=OLD)
    policy = RetentionPolicy.build("30d", ["COMPLETED"], ["keeper"], 2)
    result = purge_runs(policy)
    assert (result.runs, result.batches) == (5, 3)
    assert result.rows["WorkflowRun"] == 5
    assert result.rows["WorkflowStage"] == 20
    assert result.rows["OutboxEvent"] == 15
    assert set(WorkflowRun.objects.values_list("pk", flat=True)) == {r.pk for r in failed + other}

    _purge("--older-than", "30d", "--status", "failed,CANCELLED", "--workflow", "keeper")
    assert set(WorkflowRun.objects.values_list("pk", flat=True)) == {r.pk for r in other}


def test_dry_run_counts_and_deletes_nothing():
    seed_runs(4, workflow_id="keeper", start=OLD)
    seed_runs(2, workflow_id="other", status="CANCELLED", start=OLD)
    seed_runs(1, workflow_id="keeper")
    output = _purge("--older-than", "30d", "--dry-run")
    assert "Would delete 6 run(s)" in output
    assert "keeper  COMPLETED  4" in output
    assert "other  CANCELLED  2" in output
    assert WorkflowRun.objects.count() == 7
    assert OutboxEvent.objects.count() == 7 * 3


def test_bulk_delete_removes_blobs_only_after_commit():
    runs = [_engine_run(f"b{i}") for i in range(3)]
    folders = [_folder(r) for r in runs]
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        counts = delete_runs([r.pk for r in runs])
        assert counts["django_workflow_engine.WorkflowRun"] == 3
        assert all(f.exists() for f in folders)  # not before the commit
    assert not any(f.exists() for f in folders)
    # the runs are read for the receivers without their (possibly large) input and output
    run_selects = [q["sql"] for q in queries if q["sql"].startswith('SELECT "django_workflow_engine_workflowrun"')]
    assert run_selects
    assert not [sql for sql in run_selects if '"input"' in sql or '"output"' in sql]

    kept = _engine_run("rolled-back")

    def delete_then_fail() -> None:
        with transaction.atomic():
            delete_runs([kept.pk])
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        delete_then_fail()
    assert WorkflowRun.objects.filter(pk=kept.pk).exists()
    assert _folder(kept).exists()
    assert OutboxEvent.objects.filter(run_id=kept.pk).exists()


def test_delete_runs_outside_a_transaction_is_refused():
    run = _engine_run("outside")
    with pytest.raises(RuntimeError, match=r"transaction\.atomic"):
        delete_runs([run.pk])
    assert WorkflowRun.objects.filter(pk=run.pk).exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "30"], "--older-than is '30': use a positive age with a unit"),
        (["--older-than", "0d"], "--older-than is '0d'"),
        (["--older-than", "99999999d"], "the longest age is 36500d"),
        (["--older-than", "30d", "--status", "RUNNING"], "--status: 'RUNNING' cannot be purged"),
        (["--older-than", "30d", "--batch-size", "0"], "--batch-size is 0: use a whole number from 1 to 10000"),
    ],
)
def test_bad_arguments_are_one_line_errors_with_status_2(args, message):
    seed_runs(1, start=OLD)
    with pytest.raises(CommandError) as info:
        _purge(*args)
    assert message in str(info.value)
    assert info.value.returncode == 2
    assert WorkflowRun.objects.count() == 1


def test_maintenance_applies_the_retention_setting_a_bounded_number_per_tick():
    seed_runs(5, workflow_id="keeper", start=OLD)
    seed_runs(2, workflow_id="keeper", status="FAILED", start=OLD)
    young = seed_runs(1, workflow_id="keeper")
    retention = {"older_than": "30d", "statuses": ["COMPLETED"], "batch_size": 2, "max_runs_per_tick": 3}
    with override_settings(WORKFLOW_ENGINE={"RETENTION": retention}):
        assert run_maintenance_tick().runs_purged == 3
        result = run_maintenance_tick()
    assert (result.runs_purged, result.errors) == (2, [])
    assert WorkflowRun.objects.filter(status="COMPLETED").get().pk == young[0].pk
    assert WorkflowRun.objects.filter(status="FAILED").count() == 2
    assert run_maintenance_tick().runs_purged == 0  # no setting: nothing purged


@pytest.mark.parametrize(
    ("retention", "message"),
    [
        ("30d", "RETENTION is '30d': use None or a dict"),
        ({}, "RETENTION needs 'older_than'"),
        ({"older_than": "soon"}, "RETENTION['older_than'] is 'soon'"),
        ({"older_than": "30d", "statuses": ["PENDING"]}, "RETENTION['statuses']: 'PENDING' cannot be purged"),
        ({"older_than": "30d", "statuses": "COMPLETED"}, "RETENTION['statuses'] is 'COMPLETED'"),
        ({"older_than": "30d", "workflows": "keeper"}, "RETENTION['workflows'] is 'keeper'"),
        ({"older_than": "30d", "batch_size": 0}, "RETENTION['batch_size'] is 0"),
        ({"older_than": "30d", "max_runs_per_tick": -1}, "RETENTION['max_runs_per_tick'] is -1"),
        ({"older_than": "30d", "keep": 1}, "RETENTION has unknown key(s) 'keep'"),
    ],
)
def test_system_check_reports_a_bad_retention_setting(retention, message):
    with override_settings(WORKFLOW_ENGINE={"RETENTION": retention}):
        errors = [e for e in checks.run_checks() if e.id == "django_workflow_engine.E020"]
        with pytest.raises(InvalidRetention):  # and the maintenance step refuses to guess
            apply_retention()
    assert len(errors) == 1
    assert message in errors[0].msg


def test_a_good_retention_setting_passes_the_check():
    retention = {"older_than": 86400 * 30, "statuses": ["COMPLETED"], "workflows": ["keeper"], "batch_size": 100}
    with override_settings(WORKFLOW_ENGINE={"RETENTION": retention}):
        assert [e for e in checks.run_checks() if e.id.startswith("django_workflow_engine")] == []


def test_batches_walk_runs_with_equal_timestamps_in_id_order():
    runs = seed_runs(5, workflow_id="keeper", start=OLD)
    WorkflowRun.objects.update(updated_at=OLD)  # one timestamp: the id breaks the ties between batches
    seen: list[int] = []
    result = purge_runs(RetentionPolicy.build("30d", batch_size=2), progress=lambda r: seen.append(r.runs))
    assert (result.runs, result.batches, seen) == (5, 3, [2, 4, 5])
    assert not WorkflowRun.objects.filter(pk__in=[r.pk for r in runs]).exists()
