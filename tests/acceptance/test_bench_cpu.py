"""The benchmark programs that need no peer system, end to end on the test database: ``stagecpu.py`` (CPU per
stage, split between the engine and its PostgreSQL backend) and ``live.py``'s engine on the database transport
(real ``runworker`` processes, no Redis)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

pytestmark = [
    pytest.mark.acceptance,
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]

ROOT = Path(__file__).resolve().parents[2]


def _bench(args: list[str], tmp_path: Path, **env: str) -> dict:
    environ = dict(os.environ, BENCH_PG_DB=connection.settings_dict["NAME"], BENCH_RESULTS_DIR=str(tmp_path), **env)
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((tmp_path / f"{Path(args[0]).stem}.json").read_text())


def test_stagecpu_splits_the_cpu_of_each_stage_between_the_engine_and_its_database_backend(tmp_path):
    data = _bench(["benchmarks/stagecpu.py", "--runs", "30", "--rounds", "1"], tmp_path)
    median = data["results"]["postgresql"]["median"]
    assert median["stage_client_ms"] > 0
    assert median["stage_db_ms"] > 0
    assert median["start_client_ms"] > 0
    assert median["start_db_ms"] > 0
    # bench-seq3 (a -> b -> c) on the worker's path: a begin transaction for a, then one outcome transaction per
    # stage, b and c started by eager continuation: 4 COMMITs per run of 3 stages, and the drain's last look for
    # work (the counted pass has 30 runs, 90 stages).
    assert 4 * 30 <= round(median["stage_commits"] * 90) <= 4 * 30 + 2
    assert 0 < median["statement_us"] < median["transaction_us"]


def test_live_phase_of_the_engine_on_the_database_transport(redis_conn, tmp_path):
    redis_db = redis_conn.connection_pool.connection_kwargs.get("db", 0)
    args = ["benchmarks/live.py", "--quick", "--runs", "20", "--systems", "engine-db"]
    data = _bench(args, tmp_path, BENCH_REDIS_DB=str(redis_db))
    (result,) = data["results"]
    assert "error" not in result, result
    assert (result["system"], result["stages"], result["not_successful"]) == ("engine-db", 60, 0)
    assert result["own_postgres_cpu_ms_per_stage"] > 0
    assert data["ratios"] == {}  # no engine-on-RQ phase in these rounds to compare with
