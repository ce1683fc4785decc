"""CPU per stage, split between the engine (Python) and PostgreSQL, measured in one process: a tool for cuts.

    .venv/bin/python benchmarks/stagecpu.py                    # 2,000 runs x 3 rounds, PostgreSQL
    .venv/bin/python benchmarks/stagecpu.py --runs 500 --rounds 1 --databases postgresql,sqlite
    sh benchmarks/snapshot.sh <commit> /tmp/a   # then the same from /tmp/a: a before/after pair, alternated

The live and backlog phases (``live.py``, ``throughput.py``) time whole systems and move by 2x when another
session shares the machine, so a cut worth 5 % cannot be seen in them. This program counts CPU seconds instead,
which another process's load barely moves: it starts N runs of ``bench-seq3`` (``a -> b -> c``, no-op stages)
in this process, then executes them with ``drain(eager=True)`` (the worker's path: dequeue, begin, run, record,
eager continuation; database transport, no Redis), and reports

* **client CPU ms per start / per stage**: this process's CPU (``time.process_time``);
* **PostgreSQL CPU ms per start / per stage**: the CPU of this process's own backend (``/proc/<pid>/stat`` of
  ``pg_backend_pid()``), nobody else's;
* **statements, COMMITs per stage**: counted in a separate, shorter pass (a counting execute wrapper costs CPU);
* the fixed costs under them: one hot statement (a primary-key read through the engine's cursor) and one
  transaction around it, in client microseconds.

Each round empties the engine's tables (SQLite: a new file); the median of the rounds is reported. Database:
``BENCH_PG_DB`` (default ``dwe_bench``); SQLite: a temporary file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    BENCH_PG_DB,
    PG_BASE,
    PYTHON,
    ROOT,
    child_env,
    cpu_seconds,
    ensure_pg_database,
    machine,
    migrate,
    table,
    write_json,
)

WORKFLOW = "bench-seq3"
STAGES = 3


def _backend_cpu() -> float:
    """CPU seconds of this process's own PostgreSQL backend (0 on SQLite)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return 0.0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    return cpu_seconds(pid)


def _counted(runs: int) -> dict[str, float]:
    """Statements and COMMITs per start and per stage, from a separate pass of ``runs`` runs."""
    from django.db import connection

    from django_workflow_engine import engine
    from django_workflow_engine.hosts.drain import drain

    counts = {"statements": 0, "commits": 0}

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        counts["statements"] += 1
        return execute(sql, params, many, context)

    connection.ensure_connection()
    django_commit = connection._commit  # what atomic() calls at the end of a transaction

    def commit() -> Any:
        counts["commits"] += 1
        return django_commit()

    connection._commit = commit  # type: ignore[method-assign]
    try:
        with connection.execute_wrapper(count):
            for i in range(runs):
                engine.start(WORKFLOW, {"n": i})
            started = dict(counts)
            counts.update(statements=0, commits=0)
            drain(engine.kernel, eager=True, worker_id="stagecpu")
    finally:
        del connection._commit
    stages = runs * STAGES
    return {
        "start_statements": started["statements"] / runs,
        "start_commits": started["commits"] / runs,
        "stage_statements": counts["statements"] / stages,
        "stage_commits": counts["commits"] / stages,
    }


def _fixed_costs(n: int = 3000) -> dict[str, float]:
    """Client microseconds of one hot statement, and of one transaction holding it."""
    from django.db import connections, transaction

    from django_workflow_engine.adapters.cursors import hot_cursor
    from django_workflow_engine.adapters.statements import q, table
    from django_workflow_engine.models import WorkflowRun

    connection = connections["default"]
    sql = f"SELECT {q('id')} FROM {table(WorkflowRun)} WHERE {q('id')} = %s"

    def statement(i: int) -> None:
        with hot_cursor(connection) as cursor:
            cursor.execute(sql, [str(i)])
            cursor.fetchone()

    def in_transaction(i: int) -> None:
        with transaction.atomic():
            statement(i)

    out = {}
    for name, fn in (("statement_us", statement), ("transaction_us", in_transaction)):
        fn(0)
        t = time.process_time()
        for i in range(n):
            fn(i)
        out[name] = 1e6 * (time.process_time() - t) / n
    return out


def child(config: dict[str, Any]) -> dict[str, Any]:
    from benchmarks._common import reset_engine_tables, setup_django

    setup_django()
    from django_workflow_engine import engine
    from django_workflow_engine.hosts.drain import drain

    runs = config["runs"]
    from django.db import connection

    if connection.vendor == "postgresql":
        reset_engine_tables()
    engine.start(WORKFLOW, {"n": -1})  # warm-up: every statement of the path prepared once
    drain(engine.kernel, eager=True, worker_id="stagecpu")
    engine.start(WORKFLOW, {"n": -2})
    drain(engine.kernel, eager=True, worker_id="stagecpu")
    pg0, me0 = _backend_cpu(), time.process_time()
    for i in range(runs):
        engine.start(WORKFLOW, {"n": i})
    pg1, me1 = _backend_cpu(), time.process_time()
    result = drain(engine.kernel, eager=True, worker_id="stagecpu")
    pg2, me2 = _backend_cpu(), time.process_time()
    stages = runs * STAGES
    if result.completed != stages:
        raise RuntimeError(f"expected {stages} completed stages, drained {result}")
    out = {
        "start_client_ms": 1000 * (me1 - me0) / runs,
        "start_db_ms": 1000 * (pg1 - pg0) / runs,
        "stage_client_ms": 1000 * (me2 - me1) / stages,
        "stage_db_ms": 1000 * (pg2 - pg1) / stages,
    }
    out.update(_counted(min(runs, 200)))
    out.update(_fixed_costs())
    return out


def run_child(database: str, config: dict[str, Any], tmp: str, round_no: int) -> dict[str, Any]:
    # SQLite: a new file each round (its tables are not emptied: deleting them row by row trips foreign keys).
    url = PG_BASE + BENCH_PG_DB if database == "postgresql" else f"sqlite:///{tmp}/stagecpu-{round_no}.sqlite3"
    env = child_env(url, {"TRANSPORT": "database"})
    if database == "postgresql":
        ensure_pg_database(BENCH_PG_DB)
    migrate(env)
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        args = [PYTHON, str(Path(__file__).resolve()), "--child", json.dumps(config), "--out", out.name]
        proc = subprocess.run(args, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{database}: child failed:\n{proc.stderr[-3000:]}")
        return json.load(out)


COLUMNS = [
    ("stage_client_ms", "client CPU ms/stage", 3),
    ("stage_db_ms", "PG CPU ms/stage", 3),
    ("stage_statements", "statements/stage", 2),
    ("stage_commits", "COMMITs/stage", 2),
    ("start_client_ms", "client CPU ms/start", 3),
    ("start_db_ms", "PG CPU ms/start", 3),
    ("statement_us", "1 statement us", 1),
    ("transaction_us", "1 transaction us", 1),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2000, help="runs per round (default 2,000 = 6,000 stages)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per database; the median is reported")
    parser.add_argument("--databases", default="postgresql", help="postgresql, sqlite or both (comma-separated)")
    parser.add_argument("--quick", action="store_true", help="200 runs, 1 round")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.runs, args.rounds = 200, 1
    if args.child:
        Path(args.out).write_text(json.dumps(child(json.loads(args.child))))
        return
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for database in args.databases.split(","):
            rounds = [run_child(database, {"runs": args.runs}, tmp, n) for n in range(args.rounds)]
            median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
            results[database] = {"median": median, "rounds": rounds}
            rows.append([database, *(f"{median[key]:.{digits}f}" for key, _, digits in COLUMNS)])
            if database == "sqlite":
                rows[-1][2] = rows[-1][6] = "-"  # no server process
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    title = f"CPU per stage of {WORKFLOW}, drain(eager=True), {args.runs} runs, median of {args.rounds} (load {load})"
    print(table(["database", *(label for _, label, _ in COLUMNS)], rows, title=title))
    path = write_json("stagecpu", {"machine": machine(), "runs": args.runs, "results": results})
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
