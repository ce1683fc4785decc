"""Fault injection under load: real workers and maintenance on PostgreSQL + Redis, killed and starved.

Each test prints a summary row; the session prints the table at the end (see ``pytest_terminal_summary``
in this module's conftest). Marked ``chaos``: part of the CI run.
"""

from __future__ import annotations

import random
import subprocess
import time
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Count, Sum

from django_workflow_engine import engine
from django_workflow_engine.models import AICall, WorkflowJob, WorkflowLog, WorkflowRun, WorkflowStage

from .conftest import CHAOS_SUMMARY, wait_until

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.acceptance,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.django_db(transaction=True),
]

CHAOS = {
    "TRANSPORT": "rq",
    "HEARTBEAT_SECONDS": 1,
    "LEASE_SECONDS": 4,
    "MAINTENANCE_INTERVAL_SECONDS": 0.5,
    "REDELIVER_SECONDS": 3,
    "RETRY_BASE_SECONDS": 0.2,
    "MAX_ATTEMPTS": 5,
}


def _unfinished(run_ids) -> int:
    return WorkflowRun.objects.filter(id__in=run_ids).exclude(status__in=["COMPLETED", "FAILED", "CANCELLED"]).count()


def _verify(run_ids, name: str, faults: dict[str, int], started: float) -> None:
    statuses = dict(WorkflowRun.objects.filter(id__in=run_ids).values_list("status").annotate(n=Count("id")))
    completed = statuses.get("COMPLETED", 0)
    CHAOS_SUMMARY.append(
        {
            "test": name,
            "runs": len(run_ids),
            "faults": ", ".join(f"{k}={v}" for k, v in faults.items()) or "-",
            "completed": completed,
            "lost": len(run_ids) - completed,
            "seconds": round(time.monotonic() - started, 1),
        }
    )
    assert statuses == {"COMPLETED": len(run_ids)}
    # one COMPLETED record per stage and run (the unique constraint makes a second record impossible; a
    # re-executed stage must still end COMPLETED exactly once)
    assert WorkflowStage.objects.filter(run_id__in=run_ids, status="COMPLETED").count() == 4 * len(run_ids)
    # the join stage's effect (its log line) is recorded once per run unless its worker died mid-stage
    joins = (
        WorkflowLog.objects.filter(run_id__in=run_ids, message="executed join").values("run_id").annotate(n=Count("id"))
    )
    assert all(row["n"] >= 1 for row in joins)


def _start_runs(n: int) -> list[str]:
    return [engine.start("triple", {"n": i, "sleep": 0.02}).id for i in range(n)]


AI_CALL = Decimal("0.0000135")  # one mocked gpt-4o-mini call: 10 x 1.5e-7 + 20 x 6e-7


def _worker_after_an_ai_call(run_ids, live: dict[str, subprocess.Popen]) -> str | None:
    """A live worker now executing an AI stage that has already recorded a call (the kill the journal is for)."""
    busy = AICall.objects.filter(run_id__in=run_ids, stage__stage_id="right", stage__status="RUNNING").values("run")
    holders = WorkflowJob.objects.filter(run__in=busy, stage_id="right", status="RUNNING").values_list(
        "worker_id", flat=True
    )
    return next((worker for worker in holders if worker in live), None)


def test_random_worker_sigkills_lose_no_run_and_pay_no_ai_call_twice(processes, redis_conn, settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **CHAOS}
    workers = {
        f"w{i}": processes.start("runworker", "--worker-id", f"w{i}", engine_settings=CHAOS, name=f"w{i}")
        for i in range(3)
    }
    processes.start("runmaintenance", engine_settings=CHAOS, name="maintenance")
    started = time.monotonic()
    run_ids = [engine.start("triple-ai", {"n": i, "sleep": 0.02}).id for i in range(500)]
    kills = after_ai_call = 0
    rng = random.Random(7)
    deadline = time.monotonic() + 400
    while _unfinished(run_ids) and time.monotonic() < deadline:
        time.sleep(rng.uniform(1.5, 3))
        if kills < 12:
            # every other kill targets a worker between an AI call and its stage's completion
            victim = None
            for _ in range(20 if kills % 2 else 0):  # look for up to ~1 s
                victim = _worker_after_an_ai_call(run_ids, workers)
                if victim:
                    break
                time.sleep(0.05)
            after_ai_call += victim is not None
            victim = victim or rng.choice(sorted(workers))
            workers[victim].kill()
            workers[victim].wait()
            del workers[victim]
            kills += 1
            name = f"w{kills}-{victim}"
            workers[name] = processes.start("runworker", "--worker-id", name, engine_settings=CHAOS, name=name)
    wait_until(lambda: not _unfinished(run_ids), timeout=max(10, deadline - time.monotonic()), message="runs")
    ai_stages = WorkflowStage.objects.filter(run_id__in=run_ids, stage_id="right")
    # AI calls recorded by an execution that died, given back to the one that completed the stage
    replayed = sum(
        AICall.objects.filter(stage=stage, created_at__lt=stage.started_at).count()
        for stage in ai_stages.filter(ai_calls__isnull=False).distinct()
    )
    faults = {"sigkill": kills, "sigkill_after_ai_call": after_ai_call, "ai_calls_replayed": replayed}
    _verify(run_ids, "worker SIGKILL (AI stage)", faults, started)

    # No duplicate AI cost rows: exactly one row per logical call (two per AI stage, ordinals 1 and 2) ...
    rows = AICall.objects.filter(run_id__in=run_ids)
    assert rows.count() == 2 * len(run_ids)
    per_key = rows.values("stage", "call_key").annotate(n=Count("id"))
    assert {row["n"] for row in per_key} == {1}
    assert {key.split(":")[1] for key in rows.values_list("call_key", flat=True)} == {"1", "2"}
    assert not rows.filter(stage__isnull=True).exists()
    # ... and every total agrees with the rows: run totals, and the AI stage's metrics
    per_run = {r["run"]: r for r in rows.values("run").annotate(n=Count("id"), cost=Sum("cost"))}
    for run in WorkflowRun.objects.filter(id__in=run_ids):
        assert (per_run[run.id]["n"], per_run[run.id]["cost"]) == (2, 2 * AI_CALL), run.id
        assert (run.total_cost, run.total_tokens) == (2 * AI_CALL, 60), run.id
    metrics = {(s.metrics["ai_cost"], s.metrics["ai_tokens"], s.metrics["ai_calls"]) for s in ai_stages}
    assert metrics == {("0.000027", 60, 2)}
    # the journal's replay data is dropped once each run has finished (when its events are published)
    wait_until(lambda: not rows.filter(replay__isnull=False).exists(), timeout=60, message="replay data dropped")
    assert after_ai_call >= 1
    assert replayed >= 1


def _pg_restart() -> None:
    version = subprocess.run(["ls", "/etc/postgresql"], capture_output=True, text=True, check=True).stdout.split()[0]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True, timeout=120)


def test_postgres_restart_mid_load(processes, redis_conn, settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **CHAOS}
    for i in range(2):
        processes.start("runworker", "--worker-id", f"w{i}", engine_settings=CHAOS, name=f"w{i}")
    processes.start("runmaintenance", engine_settings=CHAOS, name="maintenance")
    started = time.monotonic()
    run_ids = _start_runs(150)
    time.sleep(2)
    connection.close()
    _pg_restart()
    wait_until(lambda: _unfinished_retrying(run_ids) == 0, timeout=240, message="runs after PostgreSQL restart")
    _verify(run_ids, "PostgreSQL restart", {"pg_restart": 1}, started)


def _unfinished_retrying(run_ids) -> int:
    try:
        return _unfinished(run_ids)
    except Exception:
        connection.close()
        return -1


def test_redis_restarted_empty_mid_load(processes, redis_conn, settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **CHAOS}
    for i in range(2):
        processes.start("runworker", "--worker-id", f"w{i}", engine_settings=CHAOS, name=f"w{i}")
    processes.start("runmaintenance", engine_settings=CHAOS, name="maintenance")
    started = time.monotonic()
    run_ids = _start_runs(150)
    time.sleep(1.5)
    # a restart of a Redis that keeps nothing on disk: every queued message is gone
    redis_conn.execute_command("CLIENT", "KILL", "TYPE", "normal")
    redis_conn.flushall()
    wait_until(lambda: not _unfinished(run_ids), timeout=240, message="runs after Redis lost everything")
    _verify(run_ids, "Redis restarted empty", {"redis_flush": 1}, started)


def test_maintenance_killed_and_two_loops_at_once(processes, redis_conn, settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **CHAOS}
    for i in range(2):
        processes.start("runworker", "--worker-id", f"w{i}", engine_settings=CHAOS, name=f"w{i}")
    first = processes.start("runmaintenance", engine_settings=CHAOS, name="m1")
    processes.start("runmaintenance", engine_settings=CHAOS, name="m2")
    started = time.monotonic()
    # created PENDING: only maintenance claims them, so the two loops race for every run
    run_ids = [engine.create("triple", {"n": i}).id for i in range(150)]
    time.sleep(2)
    first.kill()
    first.wait()
    processes.start("runmaintenance", engine_settings=CHAOS, name="m1-again")
    wait_until(lambda: not _unfinished(run_ids), timeout=240, message="runs with racing maintenance loops")
    _verify(run_ids, "maintenance killed + 2 loops", {"maintenance_kill": 1, "concurrent_loops": 2}, started)
    assert WorkflowStage.objects.filter(run_id__in=run_ids, stage_id="ingest").count() == len(run_ids)


def test_clock_skew_within_the_lease(processes, redis_conn, settings):
    """Workers whose clocks run 1.5 s apart (within the 4 s lease) neither steal nor lose jobs."""
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, **CHAOS}
    for name, skew in (("early", "-1.5"), ("late", "1.5")):
        processes.start(
            "runworker", "--worker-id", name, engine_settings=CHAOS, name=name, env={"DWE_CLOCK_SKEW_SECONDS": skew}
        )
    processes.start("runmaintenance", engine_settings=CHAOS, name="maintenance")
    started = time.monotonic()
    run_ids = _start_runs(100)
    wait_until(lambda: not _unfinished(run_ids), timeout=240, message="runs with skewed clocks")
    _verify(run_ids, "clock skew ±1.5 s", {"skewed_workers": 2}, started)
