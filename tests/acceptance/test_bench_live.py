"""``benchmarks/live.py --quick`` end to end for the engine and Celery: real ``runworker`` and Celery worker
processes, the test database and the test Redis db. Skips without the ``bench`` extra (CI installs ``.[dev]``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from django_workflow_engine.models import WorkflowRun

pytest.importorskip("celery", reason="the bench extra (celery) is not installed")

pytestmark = [
    pytest.mark.acceptance,
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]

ROOT = Path(__file__).resolve().parents[2]
RUNS = 20


def test_quick_live_phase_runs_the_engine_and_celery_side_by_side(redis_conn, tmp_path):
    redis_db = redis_conn.connection_pool.connection_kwargs.get("db", 0)
    env = dict(
        os.environ,
        BENCH_PG_DB=connection.settings_dict["NAME"],
        BENCH_REDIS_DB=str(redis_db),
        BENCH_RESULTS_DIR=str(tmp_path),
    )
    proc = subprocess.run(
        [sys.executable, "benchmarks/live.py", "--quick", "--runs", str(RUNS), "--systems", "engine,celery"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((tmp_path / "live.json").read_text())
    phases = {r["system"]: r for r in data["results"]}
    assert set(phases) == {"engine", "celery"}
    for result in phases.values():
        assert "error" not in result, result
        assert (result["runs"], result["stages"], result["not_successful"]) == (RUNS, 3 * RUNS, 0)
        assert result["stages_per_s"] == pytest.approx(3 * RUNS / result["window_s"])
        # timed from the driver's first start to the last completion the system recorded, which is never after
        # the moment the driver saw every run finished
        assert 0 < result["window_s"] <= result["observed_window_s"] + 0.05
    engine = phases["engine"]
    assert 0 < engine["start_ms_p50"] <= engine["start_ms_p95"]
    assert data["ratios"] == {"celery": [pytest.approx(engine["stages_per_s"] / phases["celery"]["stages_per_s"])]}
    assert "engine x this" in proc.stdout
    # the engine really ran the three-stage workflow: the warm-up run and the timed ones, every one completed
    runs = WorkflowRun.objects.filter(workflow_id="bench-seq3")
    assert runs.count() == RUNS + 1
    assert set(runs.values_list("status", flat=True)) == {"COMPLETED"}
