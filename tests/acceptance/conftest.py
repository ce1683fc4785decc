"""Real processes: ``manage.py runworker`` / ``runmaintenance`` against the test database (and Redis)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
CHAOS_SUMMARY: list[dict] = []


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if not CHAOS_SUMMARY:
        return
    columns = ["test", "runs", "faults", "completed", "lost", "seconds"]
    widths = {c: max(len(c), *(len(str(row[c])) for row in CHAOS_SUMMARY)) for c in columns}
    terminalreporter.section("chaos summary")
    terminalreporter.write_line("  ".join(c.ljust(widths[c]) for c in columns))
    for row in CHAOS_SUMMARY:
        terminalreporter.write_line("  ".join(str(row[c]).ljust(widths[c]) for c in columns))
    total = sum(row["runs"] for row in CHAOS_SUMMARY)
    lost = sum(row["lost"] for row in CHAOS_SUMMARY)
    terminalreporter.write_line(f"total runs {total}, lost {lost}")


def database_url() -> str:
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    user = s.get("USER") or "postgres"
    host = s.get("HOST") or "127.0.0.1"
    port = s.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{s['NAME']}"


class Processes:
    """Starts Django management commands as real subprocesses and cleans them up."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []
        self.files: list = []

    def start(
        self,
        *args: str,
        engine_settings: dict | None = None,
        name: str = "proc",
        env: dict | None = None,
        manage_py: Path | None = None,
    ) -> subprocess.Popen:
        """Start ``python -m django *args`` (or ``python <manage_py> *args``) with the test settings, the test
        database and ``engine_settings``; ``env`` overrides any of it."""
        extra_env = env or {}
        env = dict(os.environ)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "tests.settings",
                "DATABASE_URL": database_url(),
                "DWE_ENGINE_SETTINGS": json.dumps(engine_settings or {}),
                "WORKFLOW_ENGINE_TEST_TMP": str(self.tmp),
                "PYTHONPATH": str(ROOT),
                **extra_env,
            }
        )
        log = open(self.tmp / f"{name}-{len(self.procs)}.log", "w")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            [sys.executable, *([str(manage_py)] if manage_py else ["-m", "django"]), *args],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        proc.log_path = log.name  # type: ignore[attr-defined]
        self.files.append(log)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.files:
            log.close()

    def logs(self) -> str:
        return "\n".join(f"--- {p.args}\n{Path(p.log_path).read_text()[-3000:]}" for p in self.procs)  # type: ignore[attr-defined]

    def wait_until(self, predicate, timeout: float, message: str = "condition") -> None:  # type: ignore[no-untyped-def]
        """:func:`wait_until`, printing the processes' logs when it times out."""
        try:
            wait_until(predicate, timeout=timeout, message=message)
        except AssertionError:
            print(self.logs())
            raise

    def wait_for_run(self, run, timeout: float, message: str = "the run to finish") -> None:  # type: ignore[no-untyped-def]
        """Wait until ``run`` is COMPLETED or FAILED (logs printed if it is not by then), and refresh it."""
        from django_workflow_engine.models import WorkflowRun

        self.wait_until(lambda: WorkflowRun.objects.get(pk=run.pk).status in ("COMPLETED", "FAILED"), timeout, message)
        run.refresh_from_db()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


def wait_until(predicate, timeout: float, interval: float = 0.2, message: str = "condition") -> None:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    deadline = start + timeout
    while time.monotonic() < deadline:
        if predicate():
            print(f"{message}: {time.monotonic() - start:.1f} s")
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")


@pytest.fixture
def redis_conn():
    import redis

    conn = redis.Redis.from_url(django_settings.REDIS_URL)
    conn.flushdb()
    yield conn
    conn.flushdb()
