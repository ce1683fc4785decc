"""Flat cost at scale: claim and dequeue time with 0, 10,000 and 100,000 PENDING jobs next to 1,000,000 finished
stages (PostgreSQL), with the ``EXPLAIN ANALYZE`` plans of the queries.

    .venv/bin/python benchmarks/scale.py            # 1,000,000 finished stages; 0 / 10,000 / 100,000 pending
    .venv/bin/python benchmarks/scale.py --quick    # 100,000 finished stages; 0 / 1,000 / 10,000 pending
    .venv/bin/python benchmarks/scale.py --reuse    # keep the populated database of a previous run

Database ``dwe_bench_scale`` (recreated and migrated here). Synthetic rows are generated server-side
(``INSERT ... SELECT generate_series``): F/4 COMPLETED runs, F COMPLETED stages (4 per run), F COMPLETED jobs and
F published outbox events. Each level adds RUNNING runs with one PENDING job each (stage ``a``, PENDING stage row)
and as many PENDING runs (what ``run.claimPending`` claims). Then, for each level, the engine's own adapter calls
are timed (R repetitions; the rows they take are put back afterwards):

* ``OrmJobQueue.dequeue`` (database transport / ``run_until_idle``), ``OrmJobQueue.claim`` by id (RQ path),
  ``OrmPersistence.claim_next_pending_run`` (maintenance);
* the maintenance and transition reads that touch the big tables: ``due_pending`` (lost-message redispatch),
  ``release_stale`` (lease reaper), ``get_stuck_runs``, ``get_unpublished_events`` (outbox flush),
  ``get_due_suspended_stages``, ``get_stages`` and ``jobs_for_run`` of one run.

The statements these calls execute are captured and re-run under ``EXPLAIN (ANALYZE, BUFFERS)`` in a
rolled-back transaction; a plan with a sequential scan of an engine table is flagged.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    PG_BASE,
    child_env,
    ensure_pg_database,
    machine,
    migrate,
    percentile,
    table,
    write_json,
)

DB = "dwe_bench_scale"
P = "django_workflow_engine_"


class Rollback(Exception):
    pass


def populate_finished(cursor: Any, stages: int) -> None:
    runs = stages // 4
    t = time.perf_counter()
    cursor.execute(
        f"""
        INSERT INTO {P}workflowrun (id, created_at, updated_at, version, workflow_id, workflow_name, workflow_type,
            status, priority, started_at, completed_at, duration_ms, input, output, config, total_cost, total_tokens,
            event_seq)
        SELECT md5('run' || i), ts, ts, 5, 'bench', 'Benchmark', 'bench', 'COMPLETED', 5, ts, ts + interval '1 s',
            1000, '{{}}', '{{}}', '{{}}', 0, 0, 4
        FROM (SELECT i, now() - interval '30 days' + i * interval '1 second' * (2592000.0 / %s) AS ts
              FROM generate_series(1, %s) i) s
        """,
        [runs, runs],
    )
    cursor.execute(
        f"""
        INSERT INTO {P}workflowstage (id, created_at, updated_at, version, stage_id, stage_name, stage_number,
            execution_group, attempt, status, started_at, completed_at, duration_ms, output_data, config, metrics,
            run_id)
        SELECT md5('stage' || r.id || k), r.created_at, r.completed_at, 3, s.sid, s.sid, k,
            CASE k WHEN 1 THEN 1 WHEN 4 THEN 3 ELSE 2 END, 0, 'COMPLETED', r.created_at, r.completed_at, 10,
            '{{"value": {{}}}}', '{{}}', '{{"duration_ms": 10}}', r.id
        FROM {P}workflowrun r
        CROSS JOIN (VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd')) s(k, sid)
        WHERE r.status = 'COMPLETED'
        """
    )
    cursor.execute(
        f"""
        INSERT INTO {P}workflowjob (id, created_at, updated_at, workflow_id, stage_id, status, priority, attempt,
            max_attempts, available_at, started_at, completed_at, payload, run_id)
        SELECT md5('job' || st.id), st.created_at, st.completed_at, 'bench', st.stage_id, 'COMPLETED', 5, 1, 3,
            st.created_at, st.started_at, st.completed_at, '{{}}', st.run_id
        FROM {P}workflowstage st
        """
    )
    cursor.execute(
        f"""
        INSERT INTO {P}outboxevent (created_at, run_id, sequence, event_type, payload, causation_id, occurred_at,
            published_at, retry_count)
        SELECT r.created_at, r.id, k, 'stage:completed', '{{}}', 'bench', r.created_at, r.completed_at, 0
        FROM {P}workflowrun r CROSS JOIN generate_series(1, 4) k
        """
    )
    cursor.execute("VACUUM ANALYZE")
    print(f"   populated {stages:,} finished stages in {time.perf_counter() - t:.1f} s", flush=True)


def add_pending(cursor: Any, start: int, stop: int) -> None:
    """Rows ``start..stop-1``: a RUNNING run with a PENDING job (and PENDING stage row), and a PENDING run."""
    if stop <= start:
        return
    cursor.execute(
        f"""
        INSERT INTO {P}workflowrun (id, created_at, updated_at, version, workflow_id, workflow_name, workflow_type,
            status, priority, started_at, input, config, total_cost, total_tokens, event_seq)
        SELECT md5(kind || i), now() - interval '2 minutes' + i * interval '1 ms', now() - interval '2 minutes',
            2, 'bench', 'Benchmark', 'bench', kind, 5, now() - interval '2 minutes', '{{}}', '{{}}', 0, 0, 1
        FROM generate_series(%s, %s) i CROSS JOIN (VALUES ('RUNNING'), ('PENDING')) k(kind)
        """,
        [start, stop - 1],
    )
    cursor.execute(
        f"""
        INSERT INTO {P}workflowstage (id, created_at, updated_at, version, stage_id, stage_name, stage_number,
            execution_group, attempt, status, config, run_id)
        SELECT md5('pstage' || i), now() - interval '2 minutes', now() - interval '2 minutes', 1, 'a', 'A', 1, 1, 0,
            'PENDING', '{{}}', md5('RUNNING' || i)
        FROM generate_series(%s, %s) i
        """,
        [start, stop - 1],
    )
    cursor.execute(
        f"""
        INSERT INTO {P}workflowjob (id, created_at, updated_at, workflow_id, stage_id, status, priority, attempt,
            max_attempts, available_at, payload, run_id)
        SELECT lpad(to_hex(i), 32, '0'), now() - interval '2 minutes' + i * interval '1 ms', now() - interval '2 minutes',
            'bench', 'a', 'PENDING', 5, 0, 3, now() - interval '2 minutes', '{{}}', md5('RUNNING' || i)
        FROM generate_series(%s, %s) i
        """,
        [start, stop - 1],
    )
    cursor.execute("ANALYZE")


def timed(fn: Any, repeat: int) -> dict[str, float | None]:
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": percentile(samples, 50), "p95_ms": percentile(samples, 95), "max_ms": max(samples)}


def capture_statements(fn: Any) -> list[tuple[str, Any]]:
    """The (sql, params) ``fn`` executes, in a transaction that is rolled back."""
    from django.db import connection, transaction

    statements: list[tuple[str, Any]] = []

    def wrapper(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        statements.append((sql, params))
        return execute(sql, params, many, context)

    try:
        with transaction.atomic(), connection.execute_wrapper(wrapper):
            fn()
            raise Rollback
    except Rollback:
        pass
    return [(s, p) for s, p in statements if not s.startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]


def explain(sql: str, params: Any) -> str:
    from django.db import connection, transaction

    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            raise Rollback
    except Rollback:
        pass
    return plan


def seq_scans(plan: str) -> list[str]:
    return sorted(set(re.findall(rf"Seq Scan on ({P}\w+)", plan)))


def measure_level(level: int, repeat: int) -> dict[str, Any]:
    from django.db import connection, transaction
    from django.utils import timezone

    from django_workflow_engine.adapters.job_queue import OrmJobQueue
    from django_workflow_engine.adapters.persistence import OrmPersistence
    from django_workflow_engine.models import WorkflowJob, WorkflowRun

    jobs, persistence = OrmJobQueue(), OrmPersistence()
    now = timezone.now()
    # Newest first: the timed dequeues take the oldest, so these stay claimable.
    pending_ids = list(
        WorkflowJob.objects.filter(status="PENDING").order_by("-created_at").values_list("id", flat=True)[: repeat * 50]
    )
    ids = itertools.cycle(pending_ids[::50] or [None])
    running_run = WorkflowRun.objects.filter(status="RUNNING").values_list("id", flat=True).first() or "0" * 32

    def claim_run() -> None:
        with transaction.atomic():
            persistence.claim_next_pending_run(now)

    calls = {
        "dequeue (DB transport)": lambda: jobs.dequeue("bench-scale", now),
        "claim job by id (RQ path)": lambda: jobs.claim(next(ids) or "0" * 32, "bench-scale", now),
        "claim next pending run": claim_run,
        "due_pending (redispatch)": lambda: jobs.due_pending(now, now - timedelta(seconds=30), 500),
        "release_stale (lease reaper)": lambda: jobs.release_stale(now - timedelta(seconds=300), now),
        "get_stuck_runs": lambda: persistence.get_stuck_runs(now - timedelta(seconds=900), 100),
        "get_unpublished_events (flush)": lambda: persistence.get_unpublished_events(500),
        "get_due_suspended_stages": lambda: persistence.get_due_suspended_stages(now, 50),
        "get_stages (one run)": lambda: persistence.get_stages(running_run),
        "jobs_for_run (one run)": lambda: jobs.jobs_for_run(running_run),
    }
    out: dict[str, Any] = {"pending_jobs": WorkflowJob.objects.filter(status="PENDING").count(), "calls": {}}
    for name, fn in calls.items():
        statements = capture_statements(fn)
        plans = [explain(sql, params) for sql, params in statements if not sql.startswith("SELECT 1")]
        timing = timed(fn, repeat)
        out["calls"][name] = {
            **timing,
            "statements": len(statements),
            "seq_scans": sorted({t for p in plans for t in seq_scans(p)}),
            "server_exec_ms": sum(float(x) for p in plans for x in re.findall(r"Execution Time: ([\d.]+) ms", p)),
            "plans": plans,
            "sql": [s for s, _ in statements],
        }
    # Put back what the timed claims took, so every level starts from the same state.
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {P}workflowjob SET status = 'PENDING', attempt = 0, worker_id = NULL, locked_at = NULL, "
            "started_at = NULL WHERE worker_id = 'bench-scale'"
        )
        cursor.execute(
            f"UPDATE {P}workflowrun SET status = 'PENDING', started_at = NULL WHERE status = 'RUNNING' "
            "AND id IN (SELECT md5('PENDING' || i) FROM generate_series(0, %s) i)",
            [level],
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--finished-stages", type=int, default=1_000_000)
    parser.add_argument("--levels", default="0,10000,100000", help="PENDING jobs (and PENDING runs) per level")
    parser.add_argument("--repeat", type=int, default=100, help="timed calls per query and level")
    parser.add_argument("--reuse", action="store_true", help="reuse the populated database")
    parser.add_argument("--plans", action="store_true", help="print every EXPLAIN ANALYZE plan")
    parser.add_argument("--quick", action="store_true", help="100,000 finished stages; 0/1,000/10,000 pending")
    args = parser.parse_args()
    if args.quick:
        args.finished_stages, args.levels, args.repeat = 100_000, "0,1000,10000", 30
    levels = [int(x) for x in args.levels.split(",")]
    info = machine()

    ensure_pg_database(DB, recreate=not args.reuse)
    env = child_env(PG_BASE + DB)
    os.environ.update(env)
    from benchmarks._common import setup_django

    setup_django()
    from django.db import connection

    from django_workflow_engine.models import WorkflowStage

    migrate(env)
    with connection.cursor() as cursor:
        if not args.reuse or not WorkflowStage.objects.filter(status="COMPLETED").exists():
            print(f"populating {args.finished_stages:,} finished stages...", flush=True)
            cursor.execute(f"TRUNCATE {P}workflowrun, {P}outboxevent CASCADE")
            populate_finished(cursor, args.finished_stages)
        else:
            for t in ("workflowjob", "workflowstage", "workflowrun"):
                column = "id" if t == "workflowrun" else "run_id"
                cursor.execute(
                    f"DELETE FROM {P}{t} WHERE {column} IN "
                    f"(SELECT id FROM {P}workflowrun WHERE status IN ('RUNNING', 'PENDING'))"
                )

    results = []
    done = 0
    for level in levels:
        with connection.cursor() as cursor:
            add_pending(cursor, done, level)
        done = max(done, level)
        print(f"level: {level:,} PENDING jobs...", flush=True)
        results.append({"level": level, **measure_level(level, args.repeat)})

    names = list(results[0]["calls"])
    rows = []
    for name in names:
        row: list[Any] = [name]
        for r in results:
            c = r["calls"][name]
            row.append(f"{c['p50_ms']:.2f} / {c['p95_ms']:.2f} ({c['server_exec_ms']:.2f})")
        scans = sorted({s for r in results for s in r["calls"][name]["seq_scans"]})
        row.append(", ".join(s.replace(P, "") for s in scans) or "none")
        rows.append(row)
    print()
    print(
        table(
            [
                "call",
                *[f"{r['level']:,} pending: p50 / p95 (server) ms" for r in results],
                "seq scans of engine tables",
            ],
            rows,
            title=f"Flat at scale: {args.finished_stages:,} finished stages (+ as many finished jobs and outbox events, "
            f"{args.finished_stages // 4:,} finished runs); PostgreSQL. Wall time of the adapter call incl. "
            "transaction; (server) = EXPLAIN ANALYZE execution time of its statements",
        )
    )
    last = results[-1]
    for name in ("dequeue (DB transport)", "claim job by id (RQ path)", "claim next pending run"):
        print(f"\nEXPLAIN ANALYZE, {name}, {last['level']:,} pending:")
        for plan in last["calls"][name]["plans"]:
            print("  " + plan.replace("\n", "\n  "))
    if args.plans:
        for name in names[3:]:
            print(f"\nEXPLAIN ANALYZE, {name}, {last['level']:,} pending:")
            for plan in last["calls"][name]["plans"]:
                print("  " + plan.replace("\n", "\n  "))
    path = write_json("scale", {"machine": info, "args": vars(args), "results": results})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
