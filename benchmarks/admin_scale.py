"""The admin at scale: page times and query counts with 100,000 runs and 1,000,000 AI calls (PostgreSQL).

    .venv/bin/python benchmarks/admin_scale.py            # 100,000 runs, 400,000 stages, 1,000,000 AI calls
    .venv/bin/python benchmarks/admin_scale.py --quick    # 10,000 runs, 100,000 AI calls
    .venv/bin/python benchmarks/admin_scale.py --reuse    # keep the populated database of a previous run

Database ``dwe_bench_admin`` (recreated and migrated here). Synthetic rows are generated server-side
(``INSERT ... SELECT generate_series``), spread evenly over the last 90 days: R runs of workflow ``bench`` or
``digest`` (96 % COMPLETED, 3 % FAILED, 1 % RUNNING), 4 stages each, and 10 AI calls per run on one of four
models (one call in 50 unpriced). Then each admin page is requested through Django's test client as a logged-in
superuser (one warm-up, then ``--repeat`` timed requests): wall time of the whole request (view, queries,
template), the number of SQL statements it ran and the slowest of them (server time, from ``EXPLAIN ANALYZE``
of the captured statement). A plan with a sequential scan of an engine table is flagged.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import PG_BASE, child_env, ensure_pg_database, machine, migrate, percentile, table, write_json

DB = "dwe_bench_admin"
P = "django_workflow_engine_"
MODELS = ("gpt-4o-mini", "gpt-4o", "claude-3-5-haiku", "gemini-1.5-flash")


def populate(cursor: Any, runs: int, calls_per_run: int) -> None:
    t = time.perf_counter()
    cursor.execute(
        f"""
        INSERT INTO {P}workflowrun (id, created_at, updated_at, version, workflow_id, workflow_name, workflow_type,
            status, priority, started_at, completed_at, duration_ms, input, output, config, total_cost, total_tokens,
            event_seq)
        SELECT md5('run' || i), ts, ts, 5, wf, wf, wf,
            CASE WHEN i %% 100 = 0 THEN 'RUNNING' WHEN i %% 100 < 4 THEN 'FAILED' ELSE 'COMPLETED' END,
            5, ts, CASE WHEN i %% 100 = 0 THEN NULL ELSE ts + interval '12 s' END, 12000, '{{"n": 1}}', '{{}}', '{{}}',
            0.0123, 1500, 8
        FROM (SELECT i, CASE WHEN i %% 3 = 0 THEN 'digest' ELSE 'bench' END AS wf,
                     now() - interval '90 days' + i * interval '1 second' * (7776000.0 / %s) AS ts
              FROM generate_series(1, %s) i) s
        """,
        [runs, runs],
    )
    cursor.execute(
        f"""
        INSERT INTO {P}workflowstage (id, created_at, updated_at, version, stage_id, stage_name, stage_number,
            execution_group, attempt, status, started_at, completed_at, duration_ms, output_data, config, metrics,
            run_id)
        SELECT md5('stage' || r.id || k), r.created_at, r.created_at, 3, s.sid, s.sid, k,
            CASE k WHEN 1 THEN 1 WHEN 4 THEN 3 ELSE 2 END, 1, 'COMPLETED', r.created_at,
            r.created_at + interval '3 s', 3000, '{{"value": {{}}}}', '{{}}', '{{"duration_ms": 3000}}', r.id
        FROM {P}workflowrun r CROSS JOIN (VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd')) s(k, sid)
        """
    )
    cursor.execute(
        f"""
        INSERT INTO {P}aicall (created_at, topic, call_type, model_key, model_id, prompt, response, input_tokens,
            output_tokens, cached_tokens, cost, latency_ms, is_batch, run_id, stage_id, workflow_id, stage_key)
        SELECT r.created_at + k * interval '1 s', 'workflow.' || r.workflow_id || '.' || s.stage_id, 'text',
            m.model, m.model, 'prompt ' || k, 'response ' || k, 1000, 200, 0,
            CASE WHEN (k + length(r.id)) %% 50 = 0 THEN NULL ELSE 0.00123 END, 800, false, r.id, s.id,
            r.workflow_id, s.stage_id
        FROM {P}workflowrun r
        CROSS JOIN generate_series(1, %s) k
        JOIN {P}workflowstage s ON s.run_id = r.id AND s.stage_number = 1 + k %% 4
        CROSS JOIN LATERAL (SELECT (ARRAY{list(MODELS)!r})[1 + (k %% 4)] AS model) m
        """,
        [calls_per_run],
    )
    cursor.execute("VACUUM ANALYZE")
    print(f"   populated {runs:,} runs and {runs * calls_per_run:,} AI calls in {time.perf_counter() - t:.1f} s")


def pages(runs_total: int) -> dict[str, str]:
    from django.urls import reverse

    from django_workflow_engine.models import WorkflowRun

    run = WorkflowRun.objects.filter(status="COMPLETED").order_by("-created_at").values_list("id", flat=True)[500]
    runs = reverse("admin:django_workflow_engine_workflowrun_changelist")
    calls = reverse("admin:django_workflow_engine_aicall_changelist")
    costs = reverse("admin:django_workflow_engine_aicall_costs")
    middle = max(1, runs_total // 200)  # 100 runs per page
    return {
        "run list": runs,
        "run list, status=FAILED": f"{runs}?status__exact=FAILED",
        "run list, workflow filter": f"{runs}?workflow=digest",
        "run list, search by id": f"{runs}?q={run}",
        f"run list, page {middle:,} of {2 * middle:,}": f"{runs}?p={middle}",
        "run detail (4 stages, 10 AI calls)": reverse("admin:django_workflow_engine_workflowrun_change", args=[run]),
        "AI call list": calls,
        "AI call list, model filter": f"{calls}?model_id={MODELS[1]}",
        "AI call list, one run": f"{calls}?run={run}",
        "costs page (default: 30 days)": costs,
        "costs page, 90 days": f"{costs}?start={_days_ago(89)}&end={_days_ago(0)}",
        "costs CSV, 30 days": reverse("admin:django_workflow_engine_aicall_costs_csv"),
    }


def _days_ago(days: int) -> str:
    from datetime import timedelta

    from django.utils import timezone

    return (timezone.localdate() - timedelta(days=days)).isoformat()


def explain_ms(sql: str) -> tuple[float, list[str], str]:
    """Server execution time of a captured statement, the engine tables its plan scans sequentially that hold
    more than 10,000 rows (a small table is read whole by design), and the plan."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        scanned = sorted(set(re.findall(rf"Seq Scan on ({P}\w+)", plan)))
        big = []
        for name in scanned:
            cursor.execute("SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)", [name])
            if cursor.fetchone()[0] > 10_000:
                big.append(name.removeprefix(P))
        transaction.set_rollback(True)
    exec_ms = float(re.search(r"Execution Time: ([\d.]+) ms", plan).group(1))  # type: ignore[union-attr]
    return exec_ms, big, plan


def measure(client: Any, url: str, repeat: int) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    if response.status_code != 200:
        raise SystemExit(f"{url}: HTTP {response.status_code}")
    queries = len(captured.captured_queries)  # read now: Django resets the query log when a request starts
    statements = [q["sql"] for q in captured.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")]
    explained = [(explain_ms(sql), sql) for sql in statements]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        client.get(url)
        times.append((time.perf_counter() - start) * 1000)
    slowest = max(explained, key=lambda e: e[0][0], default=((0.0, [], ""), ""))
    return {
        "url": url,
        "p50_ms": percentile(times, 50),
        "p95_ms": percentile(times, 95),
        "queries": queries,
        "slowest_query_ms": slowest[0][0],
        "slowest_query_plan": slowest[0][2],
        "slowest_query": slowest[1][:300],
        "seq_scans": sorted({name for (_, scanned, _), _ in explained for name in scanned}),
        "bytes": len(response.content),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--calls-per-run", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=10, help="timed requests per page")
    parser.add_argument("--reuse", action="store_true", help="reuse the populated database")
    parser.add_argument("--quick", action="store_true", help="10,000 runs, 100,000 AI calls, 5 requests per page")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.repeat = 10_000, 5
    info = machine()

    ensure_pg_database(DB, recreate=not args.reuse)
    env = child_env(PG_BASE + DB)
    os.environ.update(env)
    migrate(env)
    from benchmarks._common import setup_django

    setup_django()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    from django_workflow_engine.models import AICall

    setup_test_environment()  # the test client's host, locmem e-mail; DEBUG stays False
    if not args.reuse or not AICall.objects.exists():
        print(f"populating {args.runs:,} runs, {args.runs * args.calls_per_run:,} AI calls...", flush=True)
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {P}workflowrun, {P}aicall CASCADE")
            populate(cursor, args.runs, args.calls_per_run)
    user_model = get_user_model()
    user = user_model.objects.filter(username="bench-admin").first() or user_model.objects.create_superuser(
        "bench-admin", "bench@example.com", "unused"
    )
    client = Client()
    client.force_login(user)

    results = {}
    for name, url in pages(args.runs).items():
        results[name] = measure(client, url, args.repeat)
        print(f"   {name}: {results[name]['p50_ms']:.1f} ms", flush=True)
    rows = [
        [
            name,
            r["p50_ms"],
            r["p95_ms"],
            str(r["queries"]),
            f"{r['slowest_query_ms']:.2f}",
            ", ".join(r["seq_scans"]) or "none",
        ]
        for name, r in results.items()
    ]
    print()
    print(
        table(
            ["page", "p50 ms", "p95 ms", "queries", "slowest query (server ms)", "seq scans (tables > 10,000 rows)"],
            rows,
            title=f"Admin at scale: {args.runs:,} runs, {args.runs * 4:,} stages, {args.runs * args.calls_per_run:,} "
            f"AI calls over 90 days; PostgreSQL; {args.repeat} requests per page (Django test client, superuser)",
        )
    )
    path = write_json("admin_scale", {"machine": info, "args": vars(args), "results": results})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
