"""The embedded default under concurrency: SQLite and the database transport with several real processes.

The site's settings are Django's defaults (``ENGINE`` and ``NAME``, no ``OPTIONS``: ``tests.settings_sqlite_default``)
or the example project's (``dev.py demo``'s database). Two ``runworker`` and one ``runmaintenance`` work while a
driver process starts 200 four-stage runs: every run completes, no process logs a traceback, and no job waits
for its lease to expire (``LEASE_SECONDS`` stays at its default, 300 s: the runs must finish long before, and a
job whose lease was reaped would show a second attempt).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from django_workflow_engine.models import WorkflowJob, WorkflowLog, WorkflowRun, WorkflowStage

from .conftest import ROOT, Processes, wait_until

pytestmark = [pytest.mark.acceptance, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RUNS = 200
# The demo's own runs: four tickets, a fifth ticket left waiting for a person, a delayed start and a schedule's
# "Run now".
DEMO_RUNS = 7
# The demo leaves one run RUNNING, its review stage SUSPENDED until someone answers: it never finishes by itself.
WAITING_FOR_A_PERSON = 1
# Well within the default 300 s lease: a run left to lease expiry cannot finish in time.
FINISH_WITHIN = 120
DEFAULT_SQLITE = {"DJANGO_SETTINGS_MODULE": "tests.settings_sqlite_default"}
START_RUNS = (
    "from django_workflow_engine import engine\n"
    "for i in range({runs}):\n"
    "    engine.start({workflow!r}, {input})\n"
    "print('started', {runs})\n"
)


@pytest.fixture
def sqlite_only() -> None:
    if connection.vendor != "sqlite":
        pytest.skip("the embedded default is SQLite")


def _start_load(
    processes: Processes, env: dict[str, str], workflow: str, input_expr: str, manage_py: Path | None = None
) -> None:
    for i in range(2):
        processes.start("runworker", "--worker-id", f"w{i}", env=env, name=f"worker{i}", manage_py=manage_py)
    processes.start("runmaintenance", env=env, name="maintenance", manage_py=manage_py)
    code = START_RUNS.format(runs=RUNS, workflow=workflow, input=input_expr)
    processes.start("shell", "-c", code, env=env, name="driver", manage_py=manage_py)


def _assert_clean_logs(processes: Processes, *, warned: bool) -> None:
    """No process logged a traceback or a database error; the long-running ones are still up. ``warned``: whether
    the settings lack what system check W001 asks for (every process prints the warning at start-up)."""
    for proc in processes.procs:
        text = Path(proc.log_path).read_text()  # type: ignore[attr-defined]
        assert "Traceback" not in text, f"{proc.args}:\n{text[-5000:]}"
        assert "OperationalError" not in text, f"{proc.args}:\n{text[-5000:]}"
        assert "released for another try" not in text, f"{proc.args}:\n{text[-5000:]}"
        if "runworker" in proc.args or "runmaintenance" in proc.args:
            assert proc.poll() is None, f"{proc.args} exited with {proc.returncode}:\n{text[-5000:]}"
            assert ("django_workflow_engine.W001" in text) is warned, f"{proc.args}:\n{text[-5000:]}"


@pytest.mark.usefixtures("sqlite_only")
def test_two_workers_and_maintenance_on_django_default_sqlite_settings(processes):
    _start_load(processes, DEFAULT_SQLITE, "triple", "{'n': i}")

    def finished() -> bool:
        done = WorkflowRun.objects.filter(status__in=["COMPLETED", "FAILED", "CANCELLED"]).count()
        return done == RUNS

    processes.wait_until(finished, timeout=FINISH_WITHIN, message=f"{RUNS} runs to finish")
    assert set(WorkflowRun.objects.values_list("status", flat=True)) == {"COMPLETED"}
    assert WorkflowStage.objects.filter(status="COMPLETED").count() == 4 * RUNS
    # No lease was reaped and no attempt was spent on a lock error: every job ran once.
    assert list(WorkflowJob.objects.exclude(status="COMPLETED", attempt=1).values_list("status", "attempt")) == []
    assert WorkflowLog.objects.filter(message__startswith="executed").count() == 4 * RUNS
    _assert_clean_logs(processes, warned=True)


@pytest.mark.usefixtures("sqlite_only")
def test_demo_database_with_the_demo_running_while_workers_work(processes, tmp_path):
    """``dev.py demo``'s settings (the example project, SQLite, database transport) on a fresh database file: the
    demo command drives its runs in-process while two workers, maintenance and a driver work on the same file."""
    database = tmp_path / "demo.sqlite3"
    env = {
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "example_project"), str(ROOT)]),
        "DATABASE_URL": f"sqlite:///{database}",
        "REDIS_URL": "",  # the embedded default: no RQ
        "OPENAI_API_KEY": "",  # offline AI answers
        "MEDIA_ROOT": str(tmp_path / "media"),  # blobs and the offline AI's batches, shared by the processes
    }
    # Through manage.py, as ``dev.py demo`` runs them: it is what makes the example's AI calls answer offline.
    manage_py = ROOT / "example_project" / "manage.py"
    subprocess.run(
        [sys.executable, str(manage_py), "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
    )
    document = "{'title': f'doc {i}', 'text': 'Durable stages run in order.'}"
    _start_load(processes, env, "document-insights", document, manage_py=manage_py)
    demo = processes.start(
        "demo", "--no-admin-user", "--poll-seconds", "0.5", env=env, name="demo", manage_py=manage_py
    )
    try:
        demo.wait(timeout=FINISH_WITHIN)
    except subprocess.TimeoutExpired:
        print(processes.logs())
        raise

    def statuses() -> dict[str, int]:
        with sqlite3.connect(database, timeout=20) as db:
            return dict(
                db.execute("SELECT status, count(*) FROM django_workflow_engine_workflowrun GROUP BY status").fetchall()
            )

    def finished() -> bool:
        counts = statuses()
        return (
            sum(counts.values()) >= RUNS + DEMO_RUNS
            and set(counts) <= {"COMPLETED", "FAILED", "CANCELLED", "RUNNING"}
            and counts.get("RUNNING", 0) <= WAITING_FOR_A_PERSON
        )

    try:
        assert demo.returncode == 0
        wait_until(finished, timeout=FINISH_WITHIN, message="the driver's and the demo's runs to finish")
    except AssertionError:
        print(processes.logs())
        raise
    assert statuses() == {"COMPLETED": RUNS + DEMO_RUNS - WAITING_FOR_A_PERSON, "RUNNING": WAITING_FOR_A_PERSON}
    demo_output = Path(demo.log_path).read_text()  # type: ignore[attr-defined]
    for ticket in ("T-1001", "T-1002", "T-1003", "T-1004"):
        assert f"{ticket}: COMPLETED" in demo_output
    assert "Answered the escalation reviews of T-1002, T-1004 through engine.signal" in demo_output
    assert "T-1005 is escalated and left waiting for a person" in demo_output
    with sqlite3.connect(database, timeout=20) as db:
        assert db.execute(
            "SELECT stage_id, status FROM django_workflow_engine_workflowstage WHERE run_id IN "
            "(SELECT id FROM django_workflow_engine_workflowrun WHERE status = 'RUNNING') AND status <> 'COMPLETED'"
        ).fetchall() == [("review", "SUSPENDED")]
        assert (
            db.execute(
                "SELECT status, attempt FROM django_workflow_engine_workflowjob WHERE NOT (status = 'COMPLETED' AND "
                "attempt = 1) AND NOT (status = 'SUSPENDED' AND stage_id = 'review')"
            ).fetchall()
            == []
        )
    _assert_clean_logs(processes, warned=False)
