"""Data migrations, run against rows written the way an older version wrote them."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.db import connection
from django.utils import timezone

from django_workflow_engine.models import AICall, WorkflowRun, WorkflowStage

pytestmark = pytest.mark.django_db


def test_0004_copies_workflow_and_stage_ids_onto_calls_recorded_before_them():
    migration = importlib.import_module("django_workflow_engine.migrations.0004_aicall_workflow_and_stage")
    now = timezone.now()
    run = WorkflowRun.objects.create(
        created_at=now, updated_at=now, workflow_id="digest", workflow_name="D", workflow_type="digest", input={}
    )
    stage = WorkflowStage.objects.create(
        created_at=now, updated_at=now, run=run, stage_id="summarize", stage_name="S", stage_number=1, execution_group=1
    )

    def call(**links):
        return AICall.objects.create(
            created_at=now, topic="t", call_type="text", model_key="m", model_id="m", **links
        ).pk

    in_stage, in_run, outside = call(run=run, stage=stage), call(run=run), call()

    migration.copy_workflow_and_stage(apps, SimpleNamespace(connection=connection))

    rows = {r.pk: (r.workflow_id, r.stage_key) for r in AICall.objects.all()}
    assert rows == {in_stage: ("digest", "summarize"), in_run: ("digest", None), outside: (None, None)}
