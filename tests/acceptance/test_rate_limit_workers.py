"""An AI rate limit held by two real ``runworker`` processes: the database limiter (database transport) and the
Redis one (RQ transport).

The limit's window is 2 s instead of a minute (``AI_RATE_LIMIT_WINDOW_SECONDS``) so that 200 calls at 60 per
window take seconds; the enforcement across the two processes is the real one.
"""

from __future__ import annotations

import pytest

from django_workflow_engine import engine
from django_workflow_engine.models import AICall, WorkflowJob, WorkflowLog, WorkflowRun, WorkflowStage

pytestmark = [pytest.mark.acceptance, pytest.mark.slow, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WINDOW = 2.0
LIMITS = {
    "AI_RATE_LIMITS": {"gpt-4o-mini": {"rpm": 60}},
    "AI_RATE_LIMIT_WINDOW_SECONDS": WINDOW,
    "AI_RATE_LIMIT_WAIT_SECONDS": 0.3,
}
TRANSPORTS = {
    "database": {"TRANSPORT": "database", "WORKER_POLL_SECONDS": 0.1, **LIMITS},
    "rq": {"TRANSPORT": "rq", "HEARTBEAT_SECONDS": 1, "LEASE_SECONDS": 10, **LIMITS},
}


@pytest.mark.parametrize("transport", ["database", pytest.param("rq", marks=pytest.mark.redis)])
def test_200_calls_from_two_workers_never_pass_the_limit_and_no_stage_fails(transport, processes, redis_conn, settings):
    config = TRANSPORTS[transport]
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **config}
    workers = [
        processes.start(
            "runworker",
            "--worker-id",
            f"w{i}",
            engine_settings=config,
            name=f"worker{i}",
            env={"DWE_TEST_WORKER": f"w{i}"},
        )
        for i in range(2)
    ]
    processes.start("runmaintenance", "--interval", "0.5", engine_settings=config, name="maintenance")
    ids = [engine.start("ai-burst", {"n": 10}).id for _ in range(20)]
    processes.wait_until(
        lambda: not WorkflowRun.objects.filter(pk__in=ids).exclude(status="COMPLETED").exists(),
        timeout=120,
        message="20 runs of 10 limited calls to complete",
    )

    calls = list(AICall.objects.filter(run_id__in=ids).order_by("created_at").values_list("created_at", "error"))
    assert len(calls) == 200
    assert all(error is None for _, error in calls)
    stamps = [at for at, _ in calls]
    # No rolling window holds more than 60 calls: the 61st after any call comes a full window later (1 ms of
    # slack for the float seconds of Redis' clock).
    tightest = min((stamps[i + 60] - stamps[i]).total_seconds() for i in range(len(stamps) - 60))
    assert tightest >= WINDOW - 0.001, f"61 calls within {tightest:.3f} s"
    assert (stamps[-1] - stamps[0]).total_seconds() >= 3 * WINDOW - 0.001  # 200 calls need 4 windows

    assert not WorkflowStage.objects.filter(run_id__in=ids).exclude(status="COMPLETED").exists()
    assert not WorkflowLog.objects.filter(run_id__in=ids, level="ERROR").exists()
    # Stages were deferred at the limit, and none used a retry attempt for it.
    assert WorkflowLog.objects.filter(run_id__in=ids, message__contains="deferred: rate limit gpt-4o-mini").exists()
    assert set(WorkflowJob.objects.filter(run_id__in=ids).values_list("attempt", flat=True)) == {1}
    assert all(proc.poll() is None for proc in workers), processes.logs()
    # Both processes made calls: the limit held across them.
    finishers = {run.output["worker"] for run in WorkflowRun.objects.filter(pk__in=ids)}
    assert finishers == {"w0", "w1"}
