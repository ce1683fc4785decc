"""Start latency and statements per start, and bulk-start throughput, on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/start.py                    # 1000 starts, 20,000 bulk-started runs per database
    .venv/bin/python benchmarks/start.py --quick            # 200 starts, 2,000 bulk-started runs
    .venv/bin/python benchmarks/start.py --databases postgresql --sql   # also print the statements of one start

Workflow ``bench`` (``a -> b||c -> d``, no-op stages), ``TRANSPORT="database"`` unless ``--transport rq`` (then
the RQ doorbell rings after each commit, and its Redis round trip is part of the latency). In a child process
per database, each measured as a user would see it, from the call to the returned ``WorkflowRun``:

* ``engine.start``: ``--starts`` calls after 50 warm-up ones; p50 / p95 / mean latency; statements per start,
  ``COMMIT`` counted apart (Django does not log it; psycopg's implicit ``BEGIN`` is not counted either), on
  separate calls so that capturing them does not slow the timed ones;
* the same with an idempotency key (a new key each time);
* ``engine.create`` (a PENDING run, claimed later by maintenance);
* ``engine.start_many`` (when the engine has it): ``--bulk`` runs in calls of ``--batch`` inputs (one batch,
  so one transaction, per call); runs/s.

Client CPU is this process's CPU time per call (or per run): what the engine costs the caller, apart from
waiting for PostgreSQL (the server's work, and its WAL flush at each COMMIT, are not in it).

The machine is shared: run it twice and compare like with like (``loadavg`` is recorded with the results).
"""

from __future__ import annotations

import argparse
import json
import os
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
    ensure_pg_database,
    machine,
    migrate,
    percentile,
    table,
    write_json,
)

WARMUP = 50


def child(options: dict[str, Any]) -> dict[str, Any]:
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from django_workflow_engine import engine

    commits = [0]
    connection.ensure_connection()
    raw_commit = connection.commit

    def counting_commit() -> None:
        commits[0] += 1
        raw_commit()

    connection.commit = counting_commit  # type: ignore[method-assign]  (what atomic() calls on exit)

    results: dict[str, Any] = {}
    counter = [0]

    def keyed(**kw: Any) -> Any:
        counter[0] += 1
        return engine.start("bench", {"n": counter[0]}, idempotency_key=f"bench-{os.getpid()}-{counter[0]}", **kw)

    cases = {
        "start": lambda: engine.start("bench", {"n": 1}),
        "start (idempotency key)": keyed,
        "create": lambda: engine.create("bench", {"n": 1}),
    }
    sql_of_one: list[str] = []
    for name, call in cases.items():
        for _ in range(WARMUP):
            call()
        times = []
        cpu = time.process_time()
        for _ in range(options["starts"]):
            t = time.perf_counter()
            call()
            times.append((time.perf_counter() - t) * 1000)
        cpu = (time.process_time() - cpu) * 1000 / options["starts"]
        counted = 20
        commits[0] = 0
        with CaptureQueriesContext(connection) as captured:
            for _ in range(counted):
                call()
        if name == "start" and not sql_of_one:
            with CaptureQueriesContext(connection) as one:
                call()
            sql_of_one = [q["sql"] for q in one.captured_queries]
        results[name] = {
            "p50_ms": percentile(times, 50),
            "p95_ms": percentile(times, 95),
            "mean_ms": sum(times) / len(times),
            "cpu_ms": cpu,
            "statements": len(captured.captured_queries) / counted,
            "commits": commits[0] / counted,
        }
    if hasattr(engine, "start_many"):
        total, batch = options["bulk"], options["batch"]
        engine.start_many("bench", [{"n": i} for i in range(batch)], batch_size=batch)  # warm-up
        inputs = [{"n": i} for i in range(total)]
        commits[0] = 0
        t, cpu = time.perf_counter(), time.process_time()
        with CaptureQueriesContext(connection) as captured:
            for offset in range(0, total, batch):
                engine.start_many("bench", inputs[offset : offset + batch], batch_size=batch)
        elapsed, cpu = time.perf_counter() - t, time.process_time() - cpu
        results["start_many"] = {
            "runs": total,
            "batch": batch,
            "runs_per_s": total / elapsed,
            "cpu_us_per_run": cpu * 1e6 / total,
            "statements_per_batch": len(captured.captured_queries) / -(-total // batch),
            "commits_per_batch": commits[0] / -(-total // batch),
        }
    results["sql_of_one_start"] = sql_of_one
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=1000, help="timed calls per case (default 1000)")
    parser.add_argument("--bulk", type=int, default=20000, help="runs created with start_many (default 20,000)")
    parser.add_argument(
        "--batch", type=int, default=500, help="inputs per start_many call, and its batch_size (default 500)"
    )
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--transport", choices=["database", "rq"], default="database")
    parser.add_argument("--quick", action="store_true", help="200 starts, 2,000 bulk-started runs")
    parser.add_argument("--sql", action="store_true", help="print the statements of one engine.start")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        Path(args.out).write_text(json.dumps(child(json.loads(args.child)), default=str))
        return
    if args.quick:
        args.starts, args.bulk = min(args.starts, 200), min(args.bulk, 2000)

    info = machine()
    results: dict[str, Any] = {}
    engine_settings = {"TRANSPORT": args.transport}
    for database in args.databases.split(","):
        if database == "postgresql":
            ensure_pg_database(BENCH_PG_DB, recreate=True)
            env = child_env(PG_BASE + BENCH_PG_DB, engine_settings, conn_max_age=60)
        else:
            tmp = tempfile.mkdtemp(prefix="dwe-bench-start-")
            env = child_env(f"sqlite:///{tmp}/bench.sqlite3", engine_settings, tmp=tmp, conn_max_age=60)
        migrate(env)
        print(f"{database}: {args.starts} starts per case, {args.bulk} bulk...", flush=True)
        options = {"starts": args.starts, "bulk": args.bulk, "batch": args.batch}
        with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
            subprocess.run(
                [PYTHON, str(Path(__file__).resolve()), "--child", json.dumps(options), "--out", out.name],
                env=env,
                cwd=ROOT,
                check=True,
            )
            results[database] = json.loads(Path(out.name).read_text())

    rows = []
    for database, r in results.items():
        for case in ("start", "start (idempotency key)", "create"):
            c = r[case]
            ms = [f"{c[k]:.2f}" for k in ("p50_ms", "p95_ms", "mean_ms", "cpu_ms")]
            rows.append([database, case, *ms, c["statements"], c["commits"]])
    print()
    print(
        table(
            ["database", "call", "p50 ms", "p95 ms", "mean ms", "client CPU ms", "statements", "COMMITs"],
            rows,
            title=f"Start latency ({args.transport} transport; load {' '.join(info['loadavg_at_start'])})",
        )
    )
    keys = ("runs", "batch", "runs_per_s", "cpu_us_per_run", "statements_per_batch", "commits_per_batch")
    bulk = [[d, *(r["start_many"][k] for k in keys)] for d, r in results.items() if "start_many" in r]
    if bulk:
        print()
        print(
            table(
                ["database", "runs", "batch", "runs/s", "client CPU us/run", "statements/batch", "COMMITs/batch"],
                bulk,
                "start_many",
            )
        )
    if args.sql:
        for database, r in results.items():
            print(f"\n{database}: the statements of one engine.start")
            for sql in r["sql_of_one_start"]:
                print("  ", sql[:300] + ("..." if len(sql) > 300 else ""))
    for r in results.values():
        r.pop("sql_of_one_start", None)
    path = write_json("start", {"machine": info, "args": vars(args), "results": results})
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
