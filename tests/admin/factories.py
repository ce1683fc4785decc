"""Bulk builders for a large run history (plain inserts, no engine): used by the admin and browser tests."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from django_workflow_engine.core.ids import new_id
from django_workflow_engine.models import AICall, OutboxEvent, WorkflowJob, WorkflowLog, WorkflowRun, WorkflowStage


def seed_runs(
    n: int,
    *,
    workflow_id: str = "diamond",
    status: str = "COMPLETED",
    ai_calls: int = 2,
    logs: int = 2,
    events: int = 3,
    start=None,
) -> list[WorkflowRun]:
    """Bulk-create ``n`` finished diamond runs with 4 stages each, AI calls, logs and events (fast: a few
    bulk inserts, no engine)."""
    now = start or timezone.now()
    runs, stages, calls, log_rows, event_rows, job_rows = [], [], [], [], [], []
    plan = [("a", "Double", 1, 1), ("b", "Add one", 2, 2), ("c", "Add ten", 2, 3), ("d", "Merge", 3, 4)]
    models = ("gpt-4o-mini", "claude-3-haiku", "unpriced-model")
    for i in range(n):
        created = now - timedelta(minutes=i * 7)
        run = WorkflowRun(
            id=new_id(),
            created_at=created,
            updated_at=created,
            workflow_id=workflow_id,
            workflow_name=workflow_id.title(),
            workflow_type=workflow_id,
            status=status,
            started_at=created,
            completed_at=created + timedelta(seconds=9) if status in ("COMPLETED", "FAILED", "CANCELLED") else None,
            duration_ms=9000 if status in ("COMPLETED", "FAILED", "CANCELLED") else None,
            input={"value": i},
            output={"total": i} if status == "COMPLETED" else None,
            config={"a": {"factor": 2}},
            total_cost=Decimal("0.0125"),
            total_tokens=300,
            event_seq=events,
        )
        runs.append(run)
        for stage_id, name, group, number in plan:
            stage = WorkflowStage(
                id=new_id(),
                created_at=created,
                updated_at=created,
                run=run,
                stage_id=stage_id,
                stage_name=name,
                stage_number=number,
                execution_group=group,
                status="COMPLETED" if status == "COMPLETED" or stage_id == "a" else "PENDING",
                started_at=created + timedelta(seconds=group * 2),
                completed_at=created + timedelta(seconds=group * 2 + 1),
                duration_ms=1000,
                output_data={"value": {"n": i}},
            )
            stages.append(stage)
            job_rows.append(
                WorkflowJob(
                    id=new_id(),
                    created_at=created,
                    updated_at=created,
                    run=run,
                    workflow_id=workflow_id,
                    stage_id=stage_id,
                    status="COMPLETED",  # finished, so nothing a test drains picks them up
                    attempt=1,
                    worker_id="seed-worker",
                    available_at=created,
                    started_at=stage.started_at,
                    completed_at=stage.completed_at,
                )
            )
            if stage_id == "a":
                first_stage = stage
        for j in range(ai_calls):
            model = models[j % len(models)]
            calls.append(
                AICall(
                    created_at=created + timedelta(seconds=j),
                    topic=f"wf.{workflow_id}",
                    call_type="text" if j % 2 == 0 else "object",
                    model_key=model,
                    model_id=model,
                    input_tokens=100,
                    output_tokens=50,
                    cost=None if model == "unpriced-model" else Decimal("0.00625"),
                    latency_ms=120,
                    run=run,
                    stage=first_stage,
                    workflow_id=workflow_id,
                    stage_key=first_stage.stage_id,
                )
            )
        for j in range(logs):
            log_rows.append(
                WorkflowLog(
                    created_at=created + timedelta(milliseconds=j),
                    run=run,
                    stage=first_stage,
                    level=("INFO", "WARN", "ERROR", "DEBUG")[j % 4],
                    message=f"log line {j} of run {i}",
                )
            )
        for seq in range(1, events + 1):
            event_rows.append(
                OutboxEvent(
                    created_at=created,
                    run_id=run.id,
                    sequence=seq,
                    event_type="stage:completed",
                    payload={"stage_id": "a", "seq": seq},
                    causation_id="seed",
                    occurred_at=created,
                    published_at=created,
                )
            )
    WorkflowRun.objects.bulk_create(runs, batch_size=500)
    WorkflowStage.objects.bulk_create(stages, batch_size=500)
    AICall.objects.bulk_create(calls, batch_size=500)
    WorkflowLog.objects.bulk_create(log_rows, batch_size=500)
    OutboxEvent.objects.bulk_create(event_rows, batch_size=500)
    WorkflowJob.objects.bulk_create(job_rows, batch_size=500)
    return runs
