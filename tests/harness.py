"""Kernel harnesses for the conformance suite: one test body runs against the in-memory adapters and against
the ORM adapters (SQLite, and PostgreSQL in the DATABASE_URL pass), both driven by a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from django_workflow_engine.kernel import KernelOptions
from django_workflow_engine.testing import MemoryHarness


class MemoryKernel(MemoryHarness):
    def run_count(self) -> int:
        return len(self.store.runs)

    def event_count(self) -> int:
        return len(self.store.outbox)

    def delete_job(self, job_id: str) -> None:
        del self.store.jobs[job_id]

    def has_idempotency_key(self, key: str, command_type: str) -> bool:
        return (key, command_type) in self.store.idempotency

    def set_run_workflow(self, run_id: str, workflow_id: str) -> None:
        self.store.runs[run_id].workflow_id = workflow_id

    def delete_run(self, run_id: str) -> None:
        """Remove the run the way the store's owner would (the in-memory store has no cascades)."""
        del self.store.runs[run_id]

    def idempotency_key_count(self) -> int:
        return len(self.store.idempotency)


class OrmKernel(MemoryKernel):
    def __init__(self, workflows: Any = (), **kwargs: Any):
        from django_workflow_engine.adapters.job_queue import OrmJobQueue
        from django_workflow_engine.adapters.persistence import OrmPersistence

        super().__init__(workflows, **kwargs)
        self.persistence = self.kernel.deps.persistence = OrmPersistence()
        self.jobs = self.kernel.deps.jobs = OrmJobQueue()

    def run_count(self) -> int:
        from django_workflow_engine.models import WorkflowRun

        return WorkflowRun.objects.count()

    def event_count(self) -> int:
        from django_workflow_engine.models import OutboxEvent

        return OutboxEvent.objects.count()

    def delete_job(self, job_id: str) -> None:
        from django_workflow_engine.models import WorkflowJob

        WorkflowJob.objects.filter(pk=job_id).delete()

    def has_idempotency_key(self, key: str, command_type: str) -> bool:
        from django_workflow_engine.models import IdempotencyKey

        return IdempotencyKey.objects.filter(key=key, command_type=command_type).exists()

    def set_run_workflow(self, run_id: str, workflow_id: str) -> None:
        from django_workflow_engine.models import WorkflowRun

        WorkflowRun.objects.filter(pk=run_id).update(workflow_id=workflow_id)

    def delete_run(self, run_id: str) -> None:
        from django_workflow_engine.models import WorkflowRun

        WorkflowRun.objects.get(pk=run_id).delete()

    def idempotency_key_count(self) -> int:
        from django_workflow_engine.models import IdempotencyKey

        return IdempotencyKey.objects.count()


@pytest.fixture(params=["memory", "orm"])
def make_kernel(request):
    """``make_kernel(workflows, **options)`` -> a harness over the adapters of this parametrization.

    Modules using it carry ``pytestmark = pytest.mark.django_db`` (the ORM variant needs the test database)."""
    cls = OrmKernel if request.param == "orm" else MemoryKernel

    def make(workflows: Any = (), **kwargs: Any) -> MemoryKernel:
        kwargs.setdefault("options", KernelOptions(retry_base_seconds=0))
        return cls(workflows, **kwargs)

    make.kind = request.param  # type: ignore[attr-defined]
    return make
