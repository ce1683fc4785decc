"""A stage that raises StageDeferred: due again later as the same attempt, on both adapters (fake clock)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from django_workflow_engine import StageDeferred, WorkflowBuilder, define_stage
from django_workflow_engine.kernel import KernelOptions

pytestmark = pytest.mark.django_db


def test_a_deferred_stage_waits_without_using_attempts_then_completes(make_kernel):
    executions = []
    h = make_kernel(options=KernelOptions(retry_base_seconds=0, max_attempts=1))

    def limited(ctx):
        executions.append(h.clock.now())
        if len(executions) < 3:
            raise StageDeferred(h.clock.now() + timedelta(seconds=30), "rate limit m until later")
        return {"ok": True}

    h.registry.add(WorkflowBuilder("limited", "Limited").pipe(define_stage(id="s", name="S", execute=limited)).build())
    run_id = h.start("limited", {})
    h.drain()
    job = h.jobs.jobs_for_run(run_id)[0]
    assert (job.status, job.attempt, job.wait_reason) == ("PENDING", 0, "rate limit m until later")
    assert job.available_at == executions[0] + timedelta(seconds=30)
    assert h.stages(run_id)["s"].status == "PENDING"
    assert h.run(run_id).status == "RUNNING"

    h.clock.advance(seconds=29)
    h.drain()
    assert len(executions) == 1  # not due yet
    h.clock.advance(seconds=1)
    h.drain()
    assert len(executions) == 2
    h.clock.advance(seconds=30)
    h.drain()
    assert h.run(run_id).status == "COMPLETED"  # three executions with max_attempts=1: no attempt was used
    assert h.jobs.jobs_for_run(run_id)[0].attempt == 1
