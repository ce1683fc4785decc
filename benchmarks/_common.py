"""Helpers shared by the benchmark programs (no Django at import time)."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or ROOT / "benchmarks" / "results")
PYTHON = sys.executable
PG_BASE = "postgres://postgres@127.0.0.1:5432/"
REDIS_BASE = "redis://127.0.0.1:6379/"
# The test suite uses db 15; never FLUSHALL, only FLUSHDB on this one. BENCH_REDIS_DB / BENCH_PG_DB give a shared
# machine's users a Redis db and a PostgreSQL database name of their own.
BENCH_REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "13"))
BENCH_PG_DB = os.environ.get("BENCH_PG_DB", "dwe_bench")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- environment ----------------------------------------------------------------------------------------------


def child_env(
    database_url: str,
    engine_settings: dict[str, Any] | None = None,
    *,
    tmp: str | None = None,
    conn_max_age: int = 0,
    redis_db: int = BENCH_REDIS_DB,
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="benchmarks.settings",
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        DATABASE_URL=database_url,
        REDIS_URL=f"{REDIS_BASE}{redis_db}",
        # BENCH_ENGINE_SETTINGS (JSON) is merged over what the benchmark sets, e.g. '{"WORKER_BATCH": 1}' for an A/B.
        DWE_ENGINE_SETTINGS=json.dumps(
            {**(engine_settings or {}), **json.loads(env.get("BENCH_ENGINE_SETTINGS", "{}"))}
        ),
        BENCH_CONN_MAX_AGE=str(conn_max_age),
        PYTHONUNBUFFERED="1",
    )
    if tmp:
        env["WORKFLOW_ENGINE_TEST_TMP"] = tmp
    return env


def ensure_pg_database(name: str, *, recreate: bool = False) -> None:
    import psycopg

    with psycopg.connect(PG_BASE + "postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and recreate:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = None
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def migrate(env: dict[str, str]) -> None:
    subprocess.run([PYTHON, "-m", "django", "migrate", "--noinput", "-v", "0"], env=env, cwd=ROOT, check=True)


def redis_conn(db: int = BENCH_REDIS_DB):  # type: ignore[no-untyped-def]
    import redis

    return redis.Redis.from_url(f"{REDIS_BASE}{db}")


# -- processes ------------------------------------------------------------------------------------------------


def spawn(args: Sequence[str], env: dict[str, str], log: Path | None = None) -> subprocess.Popen:
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(list(args), env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def stop(procs: Iterable[subprocess.Popen], timeout: float = 15) -> None:
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def proc_status(pid: int, key: str = "VmRSS") -> int | None:
    """A ``/proc/<pid>/status`` field in kB (VmRSS, VmHWM...)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(parts[11]) + int(parts[12])) / CLK_TCK


def cpu_by_command() -> dict[str, float]:
    """CPU seconds used so far, summed by command name (postgres, redis-server, python...)."""
    totals: dict[str, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        parts = raw.rsplit(")", 1)[1].split()
        totals[name] = totals.get(name, 0.0) + (int(parts[11]) + int(parts[12])) / CLK_TCK
    return totals


def pg_backend_cpu(databases: Sequence[str]) -> dict[int, float]:
    """CPU seconds used so far by each PostgreSQL backend connected to ``databases`` and by the server's own
    processes (WAL writer, checkpointer: they serve every database), by pid. Other databases' backends (another
    session's test suite) are left out, which ``cpu_by_command()["postgres"]`` cannot do; subtract two readings
    with :func:`cpu_delta`."""
    import psycopg

    with psycopg.connect(PG_BASE + "postgres", autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND (datname = ANY(%s) OR "
            "backend_type NOT IN ('client backend', 'autovacuum worker', 'parallel worker'))",
            [list(databases)],
        ).fetchall()
    return {pid: cpu_seconds(pid) for (pid,) in rows}


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds between two :func:`pg_backend_cpu` readings (a backend that connected in between counts whole)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def system_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine (all cores) since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / CLK_TCK


# -- numbers and output ---------------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> str:
    cells = [[str(h) for h in headers]] + [[c if isinstance(c, str) else fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    if title:
        lines.append(title)
    lines.append("  ".join(h.ljust(w) for h, w in zip(cells[0], widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        lines.append(
            "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    snapshot = ROOT / ".snapshot-commit"  # written by benchmarks/snapshot.sh
    if snapshot.exists():
        commit_id, dirty_text = snapshot.read_text().strip(), ""
    else:
        commit_id = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty_text = subprocess.run(
            ["git", "status", "--porcelain", "--", "django_workflow_engine"], cwd=ROOT, capture_output=True, text=True
        ).stdout
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "engine_source": str(ROOT),
        "git_commit": commit_id,
        "engine_has_uncommitted_changes": bool(dirty_text.strip()),
        "loadavg_at_start": load,
    }


def write_json(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"{name}-{stamp}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def reset_engine_tables() -> None:
    """Empty every engine table of the current database (PostgreSQL: TRUNCATE; SQLite: DELETE)."""
    from django.apps import apps
    from django.db import connection

    models = list(apps.get_app_config("django_workflow_engine").get_models())
    tables = [m._meta.db_table for m in models]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")
        else:
            for model in models:  # children first is not needed: FK checks are deferred per statement
                cursor.execute(f'DELETE FROM "{model._meta.db_table}"')
