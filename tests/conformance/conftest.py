"""The port conformance suite: every test body runs against the in-memory reference adapters and the ORM
adapters (SQLite in the plain pass, PostgreSQL in the ``DATABASE_URL`` pass), both driven by a fake clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from django_workflow_engine.core.ids import new_id
from django_workflow_engine.kernel.clock import FakeClock
from django_workflow_engine.kernel.memory import InMemoryJobQueue, InMemoryPersistence, InMemoryStore
from django_workflow_engine.kernel.records import NewJob, RunRecord, StageRecord


@dataclass
class Adapters:
    kind: str
    persistence: Any
    jobs: Any
    clock: FakeClock

    def now(self) -> datetime:
        return self.clock.now()

    def run(self, run_id: str | None = None, **fields: Any) -> RunRecord:
        """Create a run (defaults for every required field) and return it as stored."""
        record = RunRecord(
            id=run_id or new_id(),
            workflow_id=fields.pop("workflow_id", "wf"),
            workflow_name=fields.pop("workflow_name", "Workflow"),
            workflow_type=fields.pop("workflow_type", "wf"),
            input=fields.pop("input", {"x": 1}),
            **fields,
        )
        return self.persistence.create_run(record, self.now())

    def stage(self, run_id: str, stage_id: str, group: int = 1, number: int = 1, **fields: Any) -> StageRecord:
        record = StageRecord(
            id=fields.pop("id", new_id()),
            run_id=run_id,
            stage_id=stage_id,
            stage_name=stage_id.title(),
            stage_number=number,
            execution_group=group,
            **fields,
        )
        return self.persistence.create_stages([record], self.now())[0]

    def job(self, run_id: str, stage_id: str = "s1", **fields: Any) -> str:
        return self.jobs.enqueue([NewJob(run_id=run_id, workflow_id="wf", stage_id=stage_id, **fields)], self.now())[0]


def orm_adapters(**queue_options: Any) -> Adapters:
    from django_workflow_engine.adapters.job_queue import OrmJobQueue
    from django_workflow_engine.adapters.persistence import OrmPersistence

    return Adapters("orm", OrmPersistence(), OrmJobQueue(**queue_options), FakeClock())


@pytest.fixture(params=["memory", "orm", "orm-fallback"])
def adapters(request, monkeypatch) -> Adapters:
    """The adapters under test. Modules carry ``pytestmark = pytest.mark.django_db`` (the ORM variant needs
    the test database). ``orm-fallback``: the ORM adapters on the path of databases without
    ``UPDATE ... RETURNING`` (select, then a conditional update), which PostgreSQL and SQLite never take."""
    if request.param == "memory":
        store = InMemoryStore()
        return Adapters("memory", InMemoryPersistence(store), InMemoryJobQueue(store), FakeClock())
    if request.param == "orm-fallback":
        from django_workflow_engine.adapters.statements import core

        monkeypatch.setattr(core, "SINGLE_STATEMENT_CLAIM_VENDORS", frozenset())
    return orm_adapters()


@pytest.fixture
def orm() -> Adapters:
    """The ORM adapters alone, for behaviour only they have (doorbell, SQL code paths)."""
    return orm_adapters()
