"""Retention purge at scale: ``purgeruns`` over 100,000 finished runs (PostgreSQL).

    .venv/bin/python benchmarks/purge.py                 # 100,000 runs to purge (+ 5 % young and running kept)
    .venv/bin/python benchmarks/purge.py --quick         # 10,000 runs
    .venv/bin/python benchmarks/purge.py --batch-size 1000

Database ``dwe_ops_bench_purge`` (recreated and migrated here; override with ``--database``). Rows are generated
server-side (``INSERT ... SELECT generate_series``): per run 4 stages, 4 jobs, 3 logs, 8 outbox events, one
idempotency key and 3 AI calls; 95 % of the runs finished 40-130 days ago (COMPLETED, FAILED, CANCELLED), the
rest young or RUNNING (kept). Then the purge runs as ``manage.py purgeruns --older-than 30d`` does, with
``purge_runs``: wall time, runs/s and rows/s; the AI cost totals (query API by workflow and by stage) before and
after must be equal; every statement of one batch is ``EXPLAIN``-ed and a sequential scan of an engine table is
flagged. Blob folders are looked up (and absent) for every run, as in production without blobs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import PG_BASE, child_env, ensure_pg_database, machine, migrate, table, write_json

P = "django_workflow_engine_"


def populate(cursor: Any, runs: int) -> None:
    t = time.perf_counter()
    kept = runs // 19  # 5 % of the total
    cursor.execute(
        f"""
        INSERT INTO {P}workflowrun (id, created_at, updated_at, version, workflow_id, workflow_name, workflow_type,
            status, priority, started_at, completed_at, duration_ms, input, output, config, total_cost, total_tokens,
            event_seq)
        SELECT md5('run' || i), ts, ts + interval '12 s', 5, wf, wf, wf, st, 5, ts,
            CASE WHEN st = 'RUNNING' THEN NULL ELSE ts + interval '12 s' END, 12000, '{{"n": 1}}', '{{"ok": true}}',
            '{{}}', 0.0123, 1500, 8
        FROM (SELECT i, CASE WHEN i %% 3 = 0 THEN 'digest' ELSE 'bench' END AS wf,
                     CASE WHEN i > %(old)s AND i %% 2 = 0 THEN 'RUNNING' WHEN i %% 50 = 0 THEN 'FAILED'
                          WHEN i %% 97 = 0 THEN 'CANCELLED' ELSE 'COMPLETED' END AS st,
                     CASE WHEN i > %(old)s THEN now() - interval '2 days' + i * interval '1 ms'
                          ELSE now() - interval '130 days' + i * interval '1 second' * (7776000.0 / %(old)s) END AS ts
              FROM generate_series(1, %(total)s) i) s
        """,
        {"old": runs, "total": runs + kept},
    )
    cursor.execute(
        f"""
        INSERT INTO {P}workflowstage (id, created_at, updated_at, version, stage_id, stage_name, stage_number,
            execution_group, attempt, status, started_at, completed_at, duration_ms, output_data, config, metrics,
            run_id)
        SELECT md5('stage' || r.id || k), r.created_at, r.created_at, 3, s.sid, s.sid, k,
            CASE k WHEN 1 THEN 1 WHEN 4 THEN 3 ELSE 2 END, 1, 'COMPLETED', r.created_at,
            r.created_at + interval '3 s', 3000, '{{"value": {{"words": 120}}}}', '{{}}', '{{"duration_ms": 3000}}', r.id
        FROM {P}workflowrun r CROSS JOIN (VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd')) s(k, sid)
        """
    )
    cursor.execute(
        f"""
        INSERT INTO {P}workflowjob (id, created_at, updated_at, run_id, workflow_id, stage_id, status, priority,
            attempt, max_attempts, available_at, started_at, completed_at, payload)
        SELECT md5('job' || s.id), s.created_at, s.created_at, s.run_id, r.workflow_id, s.stage_id, 'COMPLETED', 5,
            1, 3, s.created_at, s.created_at, s.completed_at, '{{}}'
        FROM {P}workflowstage s JOIN {P}workflowrun r ON r.id = s.run_id
        """
    )
    cursor.execute(
        f"""
        INSERT INTO {P}workflowlog (created_at, run_id, stage_id, level, message)
        SELECT s.created_at, s.run_id, s.id, 'INFO', 'stage ' || s.stage_id || ' did its work'
        FROM {P}workflowstage s WHERE s.stage_number <= 3
        """
    )
    cursor.execute(
        f"""
        INSERT INTO {P}outboxevent (created_at, run_id, sequence, event_type, payload, causation_id, occurred_at,
            published_at, retry_count)
        SELECT r.created_at, r.id, k, 'stage:completed', '{{"stage_id": "a"}}', 'seed', r.created_at, r.created_at, 0
        FROM {P}workflowrun r CROSS JOIN generate_series(1, 8) k
        """
    )
    cursor.execute(
        f"""
        INSERT INTO {P}idempotencykey (created_at, key, command_type, result, run_id)
        SELECT r.created_at, 'upload-' || r.id, 'run.create', '{{"workflowRunId": "x"}}', r.id FROM {P}workflowrun r
        """
    )
    cursor.execute(
        f"""
        INSERT INTO {P}aicall (created_at, topic, call_type, model_key, model_id, prompt, response, input_tokens,
            output_tokens, cached_tokens, cost, latency_ms, is_batch, run_id, stage_id, workflow_id, stage_key)
        SELECT r.created_at + k * interval '1 s', 'workflow.' || r.id, 'text', m, m, 'prompt', 'response',
            1000, 200, 0, CASE WHEN k = 3 AND length(r.id) > 0 AND r.id < '1' THEN NULL ELSE 0.00123 END, 800, false,
            r.id, s.id, r.workflow_id, s.stage_id
        FROM {P}workflowrun r
        CROSS JOIN generate_series(1, 3) k
        JOIN {P}workflowstage s ON s.run_id = r.id AND s.stage_number = k
        CROSS JOIN LATERAL (SELECT (ARRAY['gpt-4o-mini', 'gpt-4o', 'claude-3-5-haiku'])[k] AS m) x
        """
    )
    cursor.execute("VACUUM ANALYZE")
    print(f"   populated {runs + kept:,} runs in {time.perf_counter() - t:.1f} s", flush=True)


def counts(models: list[Any]) -> dict[str, int]:
    return {m.__name__: m.objects.count() for m in models}


def cost_views() -> dict[str, Any]:
    from django_workflow_engine.models import AICall

    return {
        "totals": AICall.objects.totals(),
        "by_workflow": list(AICall.objects.by_workflow()),
        "by_stage": list(AICall.objects.by_stage()),
        "by_model": list(AICall.objects.by_model()),
    }


def explain_batch(batch_size: int) -> list[dict[str, Any]]:
    """EXPLAIN every statement of two purge batches (run inside a rolled-back transaction)."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from django_workflow_engine.ops.retention import RetentionPolicy, purge_runs

    class Rollback(Exception):
        pass

    with CaptureQueriesContext(connection) as captured:
        try:
            with transaction.atomic():
                # two batches: the second one's select continues after the first one's last key
                purge_runs(RetentionPolicy.build("30d", ["COMPLETED"], batch_size=batch_size), max_runs=2 * batch_size)
                raise Rollback
        except Rollback:
            pass
    plans = []
    with connection.cursor() as cursor:
        for query in captured.captured_queries:
            sql = query["sql"]
            if not sql.lstrip().upper().startswith(("SELECT", "DELETE", "UPDATE")):
                continue
            cursor.execute("EXPLAIN " + sql)
            plan = [row[0] for row in cursor.fetchall()]
            scanned = {line.split("Seq Scan on ")[1].split()[0] for line in plan if "Seq Scan on " in line}
            seq = sorted(t for t in scanned if _rows(cursor, t) > 10_000)  # a scan of an empty table is no concern
            plans.append({"sql": sql[:160], "seq_scans": seq, "plan": plan, "ms": 1000 * float(query["time"])})
    return plans


def _rows(cursor: Any, table_name: str) -> int:
    cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [table_name])
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def time_scrape(repeat: int = 5) -> dict[str, float] | None:
    """Wall time of the metrics view's queries on this database (needs the ``metrics`` extra)."""
    try:
        from django_workflow_engine.ops.metrics import render_metrics

        render_metrics()  # warm-up
    except Exception:
        return None
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        render_metrics()
        times.append(1000 * (time.perf_counter() - t))
    return {"min_ms": min(times), "median_ms": sorted(times)[len(times) // 2]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000, help="old finished runs to purge")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--database", default="dwe_ops_bench_purge")
    parser.add_argument("--quick", action="store_true", help="10,000 runs")
    parser.add_argument("--reuse", action="store_true", help="keep the populated database of an --explain-only run")
    parser.add_argument("--explain-only", action="store_true", help="populate, explain and time one batch, stop")
    args = parser.parse_args()
    if args.quick:
        args.runs = 10_000
    info = machine()
    ensure_pg_database(args.database, recreate=not args.reuse)
    env = child_env(PG_BASE + args.database)
    os.environ.update(env)
    migrate(env)
    from benchmarks._common import setup_django

    setup_django()
    from django.db import connection

    from django_workflow_engine.models import (
        AICall,
        IdempotencyKey,
        OutboxEvent,
        WorkflowJob,
        WorkflowLog,
        WorkflowRun,
        WorkflowStage,
    )
    from django_workflow_engine.ops.retention import RetentionPolicy, purge_runs

    models = [WorkflowRun, WorkflowStage, WorkflowJob, WorkflowLog, OutboxEvent, IdempotencyKey, AICall]
    print(f"populating {args.runs:,} old finished runs (+5 % kept)...", flush=True)
    if not (args.reuse and WorkflowRun.objects.exists()):
        with connection.cursor() as cursor:
            populate(cursor, args.runs)
    before_rows, before_costs = counts(models), cost_views()
    scrape = time_scrape()
    if scrape:
        print(f"   metrics scrape over {before_rows['WorkflowRun']:,} runs: median {scrape['median_ms']:.0f} ms")
    plans = explain_batch(args.batch_size)
    shown: set[str] = set()
    for p in plans:
        flag = f"  SEQ SCAN: {', '.join(p['seq_scans'])}" if p["seq_scans"] else ""
        line = f"   {p['sql'][:70]}...  -> {p['plan'][0].split('(cost')[0].strip()}{flag}"
        if line not in shown:
            shown.add(line)
            print(line)
    print(f"   ({len(plans)} statements in two batches of {args.batch_size} runs)")
    for p in sorted(plans, key=lambda p: -p["ms"])[:5]:
        print(f"   slowest: {p['ms']:.1f} ms  {p['sql'][:90]}")
    if args.explain_only:
        return

    print(f"purging (batch size {args.batch_size})...", flush=True)
    result = purge_runs(RetentionPolicy.build("30d", batch_size=args.batch_size))
    after_rows, after_costs = counts(models), cost_views()
    unchanged = after_costs == before_costs
    deleted = {name: before_rows[name] - after_rows[name] for name in before_rows}
    rows = [[name, f"{before_rows[name]:,}", f"{after_rows[name]:,}", f"{deleted[name]:,}"] for name in before_rows]
    print()
    print(table(["table", "before", "after", "deleted"], rows, title="Rows"))
    total = sum(deleted.values())
    summary = [
        ["runs purged", f"{result.runs:,}"],
        ["batches", f"{result.batches:,}"],
        ["seconds", f"{result.seconds:.1f}"],
        ["runs/s", f"{result.runs / result.seconds:,.0f}"],
        ["rows deleted (all tables)", f"{total:,}"],
        ["rows/s", f"{total / result.seconds:,.0f}"],
        ["ms per batch", f"{1000 * result.seconds / max(result.batches, 1):.1f}"],
        ["AI cost totals unchanged", "yes" if unchanged else "NO"],
        ["AI calls kept", f"{after_rows['AICall']:,} of {before_rows['AICall']:,}"],
        ["seq scans in a batch's plans", ", ".join(sorted({s for p in plans for s in p["seq_scans"]})) or "none"],
    ]
    print(table(["", "value"], summary, title=f"purge_runs(--older-than 30d), PostgreSQL, {args.runs:,} runs"))
    path = write_json(
        "purge",
        {
            "machine": info,
            "args": vars(args),
            "result": {"runs": result.runs, "batches": result.batches, "seconds": result.seconds, "rows": deleted},
            "costs_unchanged": unchanged,
            "metrics_scrape": scrape,
            "cost_totals": before_costs["totals"],
            "plans": plans,
        },
    )
    print(f"\nwrote {path}")
    if not unchanged or result.runs != args.runs:
        sys.exit(f"FAILED: costs unchanged={unchanged}, purged {result.runs} of {args.runs}")


if __name__ == "__main__":
    main()
