"""Deleting a run, by any ORM path, deletes everything that belongs to it except the AI cost history."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core import checks
from django.db import transaction
from django.utils import timezone
from pydantic import BaseModel

from django_workflow_engine import WorkflowBuilder, define_stage, engine
from django_workflow_engine.core.stage import StageResult
from django_workflow_engine.hosts.maintenance import run_maintenance_tick
from django_workflow_engine.models import (
    AICall,
    IdempotencyKey,
    OutboxEvent,
    WorkflowJob,
    WorkflowLog,
    WorkflowRun,
    WorkflowStage,
)
from django_workflow_engine.testing import registered_workflows

pytestmark = pytest.mark.django_db(transaction=True)


class Out(BaseModel):
    text: str


@define_stage(id="big", name="Big", output=Out)
def big(ctx):
    ctx.log("INFO", "writing")
    ctx.storage.save(ctx.storage.stage_key(suffix="notes.json"), {"notes": "kept under the stage folder"})
    # Larger than INLINE_OUTPUT_BYTES: the output itself is a blob.
    return StageResult(output=Out(text="x" * 70_000), artifacts={"report": {"pages": 3}})


blobby = WorkflowBuilder("blobby", "Blobby", output=Out).pipe(big).build()


@pytest.fixture(autouse=True)
def _workflows():
    with registered_workflows(blobby):
        yield


def _blob_root() -> Path:
    from django_workflow_engine.conf import settings

    return Path(django_settings.MEDIA_ROOT) / settings.BLOB_PREFIX


def _run_folder(run: WorkflowRun) -> Path:
    return _blob_root() / "runs" / run.workflow_type / run.id


def _finished_run(key: str) -> WorkflowRun:
    run = engine.start("blobby", {}, idempotency_key=key, metadata={"who": "test"})
    engine.run_until_idle(flush_events=False)  # leave events unpublished: the outbox holds rows for the run
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    AICall.objects.create(
        created_at=timezone.now(),
        topic="t",
        call_type="text",
        model_key="m",
        model_id="m",
        cost=Decimal("0.25"),
        run=run,
        stage=run.stages.get(),
        workflow_id=run.workflow_id,
        stage_key="big",
        replay={"journal": {"k": "a recorded response"}},
    )
    return run


def _assert_owned_rows_exist(run: WorkflowRun) -> None:
    assert OutboxEvent.objects.filter(run_id=run.id).exists()
    assert IdempotencyKey.objects.filter(run_id=run.id).exists()
    assert WorkflowStage.objects.filter(run_id=run.id).exists()
    assert WorkflowLog.objects.filter(run_id=run.id).exists()
    files = sorted(p.name for p in _run_folder(run).rglob("*") if p.is_file())
    assert files == ["notes.json", "output.json", "report.json"]


def _assert_gone_but_costs_kept(run_id: str, folder: Path) -> None:
    assert not WorkflowRun.objects.filter(pk=run_id).exists()
    assert not OutboxEvent.objects.filter(run_id=run_id).exists()
    assert not IdempotencyKey.objects.filter(run_id=run_id).exists()
    assert not WorkflowStage.objects.filter(run_id=run_id).exists()
    assert not WorkflowJob.objects.filter(run_id=run_id).exists()
    assert not WorkflowLog.objects.filter(run_id=run_id).exists()
    assert not folder.exists()
    call = AICall.objects.get(workflow_id="blobby", stage_key="big", model_id="m")
    assert (call.run_id, call.cost, call.replay) == (None, Decimal("0.25"), None)


def test_instance_delete_removes_outbox_keys_and_blobs():
    run = _finished_run("one")
    _assert_owned_rows_exist(run)
    run_id, folder = run.id, _run_folder(run)
    run.delete()
    _assert_gone_but_costs_kept(run_id, folder)


def test_queryset_delete_removes_outbox_keys_and_blobs():
    run = _finished_run("qs")
    other = engine.start("blobby", {}, idempotency_key="other")
    engine.run_until_idle(flush_events=False)
    _assert_owned_rows_exist(run)
    WorkflowRun.objects.filter(pk=run.id).delete()
    _assert_gone_but_costs_kept(run.id, _run_folder(run))
    # Only the deleted run's belongings went.
    assert OutboxEvent.objects.filter(run_id=other.id).exists()
    assert IdempotencyKey.objects.filter(key="other").exists()
    assert _run_folder(other).exists()


def test_blobs_survive_a_rolled_back_delete():
    run = _finished_run("rollback")

    def delete_then_fail() -> None:
        with transaction.atomic():
            WorkflowRun.objects.filter(pk=run.id).delete()
            assert _run_folder(run).exists()  # not before the commit
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        delete_then_fail()
    assert WorkflowRun.objects.filter(pk=run.id).exists()
    _assert_owned_rows_exist(run)


def test_blobs_are_deleted_only_after_commit():
    run = _finished_run("commit")
    folder = _run_folder(run)
    with transaction.atomic():
        run.delete()
        assert folder.exists()
    assert not folder.exists()


def test_idempotency_key_of_a_deleted_run_starts_a_new_run_through_the_engine():
    run = _finished_run("upload-42")
    first_id = run.id
    run.delete()
    again = engine.start("blobby", {}, idempotency_key="upload-42")
    assert again.id != first_id
    assert engine.start("blobby", {}, idempotency_key="upload-42").id == again.id


def test_key_left_by_a_delete_that_bypassed_signals_does_not_poison_it():
    # What a raw SQL delete (or a delete from before keys had a run_id column) leaves behind.
    IdempotencyKey.objects.create(
        key="raw",
        command_type="run.create",
        result={"run_id": "deadbeef", "status": "RUNNING"},
        created_at=timezone.now(),
    )
    run = engine.start("blobby", {}, idempotency_key="raw")
    assert run.id != "deadbeef"
    assert IdempotencyKey.objects.get(key="raw").run_id == run.id


def test_maintenance_expires_old_keys_in_bounded_batches(settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, "IDEMPOTENCY_KEY_TTL_SECONDS": 3600}
    for i in range(5):
        engine.start("blobby", {}, idempotency_key=f"k{i}")
    old = timezone.now() - timezone.timedelta(hours=2)
    IdempotencyKey.objects.filter(key__in=["k0", "k1", "k2"]).update(created_at=old)
    result = run_maintenance_tick(max_expired_keys=2)
    assert result.keys_expired == 2
    assert "idempotency" not in result.errors
    assert run_maintenance_tick(max_expired_keys=2).keys_expired == 1
    assert sorted(IdempotencyKey.objects.values_list("key", flat=True)) == ["k3", "k4"]


def test_no_ttl_keeps_keys(settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, "IDEMPOTENCY_KEY_TTL_SECONDS": None}
    engine.start("blobby", {}, idempotency_key="forever")
    IdempotencyKey.objects.update(created_at=timezone.now() - timezone.timedelta(days=3650))
    assert run_maintenance_tick().keys_expired == 0
    assert IdempotencyKey.objects.filter(key="forever").exists()


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (0, "positive number"),
        (-5, "positive number"),
        ("1w", "positive number"),
        (True, "positive number"),
        (60, "shorter than IDEMPOTENCY_STALE_SECONDS"),
    ],
)
def test_bad_ttl_fails_the_system_check(settings, value, fragment):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, "IDEMPOTENCY_KEY_TTL_SECONDS": value}
    errors = [e for e in checks.run_checks() if e.id == "django_workflow_engine.E011"]
    assert len(errors) == 1
    assert fragment in errors[0].msg + errors[0].hint


def test_default_ttl_passes_the_system_check():
    assert not [e for e in checks.run_checks() if e.id == "django_workflow_engine.E011"]
