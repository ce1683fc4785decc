"""Throughput and latency through real ``manage.py runworker`` processes, with raw RQ as the baseline.

    .venv/bin/python benchmarks/throughput.py                 # 1,000 runs; 1 and 2 workers; rq + database (PG)
    .venv/bin/python benchmarks/throughput.py --quick         # smoke run (100 runs)
    .venv/bin/python benchmarks/throughput.py --sqlite        # also the database transport on SQLite
    .venv/bin/python benchmarks/throughput.py --transports= --no-baseline --sqlite --sqlite-options default \
        --starts-during-load --runs 200 --workers 2           # SQLite only, Django's default OPTIONS, runs
                                                              # started while the workers work

Workflow ``bench``: ``pipe(a).parallel([b, c]).pipe(d)`` of no-op stages (4 stages, 3 groups per run).
For each configuration (transport x worker count) the program, in a child process with that configuration:

1. empties the engine tables of the dedicated database ``dwe_bench`` (created and migrated here) and FLUSHDBs
   Redis db 13 (never the test suite's db 15);
2. **backlog phase**: creates N runs with ``engine.start`` while no worker runs (RQ messages are rung on commit),
   then starts W ``runworker`` processes and one ``runmaintenance``, and waits until every run is finished.
   Throughput = 4N stages / (first stage ``started_at`` -> last run ``completed_at``), from the database rows;
   worker start-up is excluded. With ``--starts-during-load`` the workers start first (a warm-up run shows they
   are up) and the N runs are started while they work, as fast as this process can: the starts then compete
   with the workers for the database (``engine.start ms`` is measured under that load);
3. **paced phase**: on the same warm workers, submits P more runs at a steady rate (``--paced-load`` x the
   backlog runs/s) and measures run latency (``created_at`` -> ``completed_at``) and the stage-to-stage gap
   (next group's first ``started_at`` - previous group's last ``completed_at``, within a run). Backlog
   latencies are reported too but are mostly queueing (FIFO over N runs).

Baseline, same program: raw RQ executing 4N no-op jobs (``benchmarks.rq_raw``) with W ``SimpleWorker``
processes, JSON serializer, ``with_scheduler=True``, ``result_ttl=0``: the transport's own ceiling. Measured the
same way (backlog enqueued first; first job start -> last job end).

CPU seconds per stage of the worker processes, PostgreSQL and Redis are sampled from ``/proc``; ``other_cpu``
is machine CPU not used by this benchmark (other programs on the machine: a high value means a noisy run).
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
    BENCH_REDIS_DB,
    PG_BASE,
    PYTHON,
    REDIS_BASE,
    ROOT,
    child_env,
    cpu_by_command,
    cpu_seconds,
    ensure_pg_database,
    machine,
    migrate,
    percentile,
    redis_conn,
    spawn,
    stop,
    system_cpu_seconds,
    table,
    write_json,
)

PG_DB = BENCH_PG_DB
RAW_QUEUE = "bench-raw"
STAGES_PER_RUN = 4


# -- raw RQ baseline ------------------------------------------------------------------------------------------


def run_raw_rq(jobs: int, workers: int, timeout: float) -> dict[str, Any]:
    from rq import Queue, Worker
    from rq.serializers import JSONSerializer

    from benchmarks.rq_raw import enqueue

    conn = redis_conn()
    conn.flushdb()
    queue = Queue(RAW_QUEUE, connection=conn, serializer=JSONSerializer)
    t = time.perf_counter()
    enqueue(queue, jobs)
    enqueue_s = time.perf_counter() - t
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cpu0, sys0 = cpu_by_command(), system_cpu_seconds()
    procs = [
        spawn([PYTHON, "-m", "benchmarks.rq_raw", f"{REDIS_BASE}{BENCH_REDIS_DB}", RAW_QUEUE], env)
        for _ in range(workers)
    ]
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        done = sum(w.successful_job_count + w.failed_job_count for w in Worker.all(connection=conn))
        if done >= jobs:
            break
        time.sleep(0.1)
    worker_cpu = sum(cpu_seconds(p.pid) for p in procs)
    cpu1, sys1 = cpu_by_command(), system_cpu_seconds()
    stop(procs)
    times = {k.decode(): v.decode() for k, v in conn.hgetall("bench:raw:times").items()}
    firsts = [float(v) for k, v in times.items() if k.endswith(":first") and v != "None"]
    lasts = [float(v) for k, v in times.items() if k.endswith(":last") and v != "None"]
    calls = sum(int(v) for k, v in times.items() if k.endswith(":n"))
    window = max(lasts) - min(firsts) if firsts and lasts else None
    conn.flushdb()
    redis_cpu = cpu1.get("redis-server", 0) - cpu0.get("redis-server", 0)
    bench_cpu = worker_cpu + redis_cpu
    return {
        "kind": "raw-rq",
        "workers": workers,
        "jobs": jobs,
        "executed": calls,
        "completed_ok": done >= jobs,
        "enqueue_s": round(enqueue_s, 3),
        "window_s": window,
        "jobs_per_s": jobs / window if window else None,
        "worker_cpu_ms_per_job": 1000 * worker_cpu / max(1, calls),
        "redis_cpu_ms_per_job": 1000 * redis_cpu / max(1, calls),
        "other_cpu_s": max(0.0, (sys1 - sys0) - bench_cpu),
    }


# -- engine configuration (child process) ---------------------------------------------------------------------


def child(config: dict[str, Any]) -> dict[str, Any]:
    """Runs inside a process whose settings select the configuration's database and transport."""
    from benchmarks._common import reset_engine_tables, setup_django

    setup_django()
    from django.db import connection
    from django.db.models import Count

    from django_workflow_engine import engine
    from django_workflow_engine.models import WorkflowJob, WorkflowRun, WorkflowStage

    runs, workers, transport = config["runs"], config["workers"], config["transport"]
    during = config.get("starts_during_load", False)
    env = dict(os.environ)
    reset_engine_tables()
    conn = redis_conn() if transport == "rq" else None  # the database transport needs no Redis
    if conn is not None:
        conn.flushdb()

    def start_runs(count: int) -> list[str]:
        return [engine.start(config["workflow"], {"n": i}).id for i in range(count)]

    if not during:
        t = time.perf_counter()
        backlog_ids = start_runs(runs)
        submit_s = time.perf_counter() - t

    log_dir = Path(config["log_dir"])
    cpu0, sys0 = cpu_by_command(), system_cpu_seconds()
    t_spawn = time.perf_counter()
    worker_procs = [
        spawn(
            [PYTHON, "-m", "django", "runworker", "--transport", transport, "--worker-id", f"bench-{i}"],
            env,
            log_dir / f"worker-{i}.log",
        )
        for i in range(workers)
    ]
    maintenance = spawn([PYTHON, "-m", "django", "runmaintenance"], env, log_dir / "maintenance.log")
    procs = [*worker_procs, maintenance]
    names = [f"worker-{i}" for i in range(workers)] + ["maintenance"]

    def wait_finished(ids: list[str] | None, expected: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        qs = WorkflowRun.objects.filter(status__in=["COMPLETED", "FAILED", "CANCELLED"])
        if ids is not None:
            qs = qs.filter(pk__in=ids)
        finished = 0
        while time.monotonic() < deadline:
            finished = qs.count()
            if finished >= expected:
                break
            exited = [(name, p.returncode) for name, p in zip(names, procs, strict=True) if p.poll() is not None]
            if exited:
                raise RuntimeError(f"process(es) exited early (name, exit code): {exited}; logs in {log_dir}")
            time.sleep(0.2)
        connection.close()
        return finished

    try:
        if during:
            wait_finished(start_runs(1), 1, 120)  # warm-up: the workers are up
            t = time.perf_counter()
            backlog_ids = start_runs(runs)
            submit_s = time.perf_counter() - t
        finished = wait_finished(backlog_ids, runs, config["timeout"])
        wall_s = time.perf_counter() - t_spawn
        worker_cpu = sum(cpu_seconds(p.pid) for p in worker_procs)
        maint_cpu = cpu_seconds(maintenance.pid)
        cpu1, sys1 = cpu_by_command(), system_cpu_seconds()
        backlog = measure(backlog_ids)

        # Paced phase on the same warm workers.
        paced_runs = config["paced_runs"]
        rate = max(0.5, config["paced_load"] * (backlog["runs_per_s"] or 1))
        paced_ids = []
        t0 = time.monotonic()
        for i in range(paced_runs):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            paced_ids.append(engine.start(config["workflow"], {"n": len(paced_ids)}).id)
        paced_finished = wait_finished(paced_ids, paced_runs, max(60.0, paced_runs / rate * 3))
        paced = measure(paced_ids)
        paced["submit_rate_runs_per_s"] = rate

        rq_messages = None
        if transport == "rq":
            from rq import Worker

            rq_messages = sum(w.successful_job_count + w.failed_job_count for w in Worker.all(connection=conn))
    finally:
        stop(procs)
    statuses = dict(
        WorkflowRun.objects.filter(pk__in=backlog_ids + paced_ids)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
    )
    stages_total = WorkflowStage.objects.filter(run_id__in=backlog_ids + paced_ids, status="COMPLETED").count()
    job_attempts = dict(
        WorkflowJob.objects.filter(run_id__in=backlog_ids + paced_ids)
        .order_by()
        .values_list("attempt")
        .annotate(n=Count("id"))
    )
    stages = runs * STAGES_PER_RUN
    pg_cpu = cpu1.get("postgres", 0) - cpu0.get("postgres", 0)
    redis_cpu = cpu1.get("redis-server", 0) - cpu0.get("redis-server", 0)
    # The orchestrator (this process) only polls every 0.2 s; count it as benchmark CPU.
    me = cpu_seconds(os.getpid())
    return {
        "kind": "engine",
        "database": connection.vendor,
        "transport": transport,
        "workflow": config["workflow"],
        "workers": workers,
        "runs": runs,
        "finished": finished,
        "statuses": statuses,
        "completed_stages": stages_total,
        "job_attempts": job_attempts,
        "starts_during_load": during,
        "sqlite_options": os.environ.get("BENCH_SQLITE_OPTIONS") if connection.vendor == "sqlite" else None,
        "worker_tracebacks": _tracebacks(log_dir),
        "submit_s": round(submit_s, 3),
        "start_ms_per_run": 1000 * submit_s / runs,
        "wall_s_incl_worker_start": round(wall_s, 3),
        **{f"backlog_{k}": v for k, v in backlog.items()},
        **{f"paced_{k}": v for k, v in paced.items()},
        "paced_finished": paced_finished,
        "rq_messages_executed": rq_messages,
        "rq_messages_per_stage": (rq_messages / ((runs + paced_runs) * STAGES_PER_RUN)) if rq_messages else None,
        "worker_cpu_ms_per_stage": 1000 * worker_cpu / stages,
        "maintenance_cpu_s": maint_cpu,
        "postgres_cpu_ms_per_stage": 1000 * pg_cpu / stages,
        "redis_cpu_ms_per_stage": 1000 * redis_cpu / stages,
        "other_cpu_s": max(0.0, (sys1 - sys0) - worker_cpu - maint_cpu - pg_cpu - redis_cpu - me),
    }


def _tracebacks(log_dir: Path) -> int:
    """Tracebacks the worker and maintenance processes logged (engine warnings and errors go to their logs)."""
    return sum(path.read_text(errors="replace").count("Traceback") for path in log_dir.glob("*.log"))


def measure(run_ids: list[str]) -> dict[str, Any]:
    """Throughput, latency and gaps of the given (finished) runs, from their database rows."""
    from django_workflow_engine.models import WorkflowRun, WorkflowStage

    runs = list(WorkflowRun.objects.filter(pk__in=run_ids).values_list("id", "created_at", "completed_at"))
    stages = list(
        WorkflowStage.objects.filter(run_id__in=run_ids).values_list(
            "run_id", "execution_group", "started_at", "completed_at"
        )
    )
    completed = [r for r in runs if r[2] is not None]
    latencies = [(done - created).total_seconds() * 1000 for _, created, done in completed]
    starts = [s[2] for s in stages if s[2] is not None]
    t0 = min(starts) if starts else None
    t1 = max(r[2] for r in completed) if completed else None
    window = (t1 - t0).total_seconds() if t0 and t1 else None
    by_run: dict[str, dict[int, list[tuple[Any, Any]]]] = {}
    for run_id, group, started, done in stages:
        by_run.setdefault(run_id, {}).setdefault(group, []).append((started, done))
    gaps: list[float] = []
    gaps_by_edge: dict[str, list[float]] = {}
    for groups in by_run.values():
        for g in sorted(groups):
            if g + 1 not in groups:
                continue
            prev_end = [d for _, d in groups[g] if d is not None]
            next_start = [s for s, _ in groups[g + 1] if s is not None]
            if prev_end and next_start:
                gap = (min(next_start) - max(prev_end)).total_seconds() * 1000
                gaps.append(gap)
                gaps_by_edge.setdefault(f"{g}->{g + 1}", []).append(gap)
    stage_count = sum(1 for s in stages if s[3] is not None)
    return {
        "window_s": window,
        "stages_per_s": stage_count / window if window else None,
        "runs_per_s": len(completed) / window if window else None,
        "latency_ms_p50": percentile(latencies, 50),
        "latency_ms_p95": percentile(latencies, 95),
        "latency_ms_p99": percentile(latencies, 99),
        "gap_ms_p50": percentile(gaps, 50),
        "gap_ms_p95": percentile(gaps, 95),
        "gap_ms_p50_by_edge": {k: percentile(v, 50) for k, v in gaps_by_edge.items()},
    }


SQLITE_OPTIONS = {
    # Django's default: no OPTIONS (what ``startproject`` writes).
    "default": {},
    # What the test suite (and this benchmark, before the SQLite work) used.
    "immediate": {"transaction_mode": "IMMEDIATE", "timeout": 20},
    # The snippet system check W001 and docs/operating.md give.
    "recommended": {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    },
}


def run_engine(config: dict[str, Any], database_url: str, tmp: str | None) -> dict[str, Any]:
    engine_settings = {"TRANSPORT": config["transport"]}
    env = child_env(database_url, engine_settings, tmp=tmp, conn_max_age=config["conn_max_age"])
    if tmp:
        env["BENCH_SQLITE_OPTIONS"] = json.dumps(SQLITE_OPTIONS[config["sqlite_options"]])
    if tmp:
        migrate(env)
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        proc = subprocess.run(
            [PYTHON, str(Path(__file__).resolve()), "--child", json.dumps(config), "--out", out.name],
            env=env,
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        if proc.returncode:
            sys.stderr.write(proc.stderr)
            raise subprocess.CalledProcessError(proc.returncode, proc.args, stderr=proc.stderr)
        return json.loads(Path(out.name).read_text())


# -- main -----------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000, help="runs per configuration (default 1000)")
    parser.add_argument("--workers", default="1,2", help="worker counts (default 1,2)")
    parser.add_argument("--transports", default="rq,database", help="engine transports on PostgreSQL")
    parser.add_argument("--sqlite", action="store_true", help="also the database transport on SQLite")
    parser.add_argument(
        "--sqlite-options",
        choices=sorted(SQLITE_OPTIONS),
        default="immediate",
        help="the SQLite database's OPTIONS: Django's default (none), the test suite's IMMEDIATE + timeout "
        "(default), or the recommended snippet (+ WAL, synchronous=NORMAL)",
    )
    parser.add_argument(
        "--starts-during-load",
        action="store_true",
        help="start the measured runs while the workers work (default: a backlog started before them)",
    )
    parser.add_argument("--paced-runs", type=int, default=200, help="runs in the paced latency phase")
    parser.add_argument("--paced-load", type=float, default=0.5, help="paced submit rate, x backlog runs/s")
    parser.add_argument("--conn-max-age", type=int, default=0, help="CONN_MAX_AGE of the workers (default 0)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the raw RQ baseline")
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 runs, 30 paced")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat the baseline and the engine configurations this many times, alternating (a shared machine's "
        "speed drifts: each engine row is compared with its own round's baseline; medians are reported)",
    )
    parser.add_argument(
        "--timeout", type=float, help="seconds to wait for a phase's runs (default max(180, 0.6 x runs))"
    )
    parser.add_argument(
        "--workflow",
        default="bench",
        choices=["bench", "bench-limited"],
        help="the measured workflow: 'bench', or 'bench-limited' (the same stages, at most 2 runs at once per key, "
        "10 keys): throughput with a concurrency limit",
    )
    parser.add_argument("--name", default="throughput", help="results/<name>.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = child(json.loads(args.child))
        Path(args.out).write_text(json.dumps(result, default=str))
        return

    if args.quick:
        args.runs, args.paced_runs = min(args.runs, 100), min(args.paced_runs, 30)
    worker_counts = [int(w) for w in args.workers.split(",")]
    transports = [t for t in args.transports.split(",") if t]
    timeout = args.timeout or max(180.0, args.runs * 0.6)
    info = machine()
    pg_url = PG_BASE + PG_DB
    if transports or not args.no_baseline:
        ensure_pg_database(PG_DB)
        migrate(child_env(pg_url))
    log_root = Path(tempfile.mkdtemp(prefix="dwe-bench-logs-"))

    results: list[dict[str, Any]] = []
    for round_no, workers in [(r, w) for r in range(args.rounds) for w in worker_counts]:
        first = len(results)
        if not args.no_baseline:
            print(f"raw RQ: {args.runs * STAGES_PER_RUN} no-op jobs, {workers} worker(s)...", flush=True)
            results.append(run_raw_rq(args.runs * STAGES_PER_RUN, workers, timeout))
        configs = [("postgresql", t) for t in transports] + ([("sqlite", "database")] if args.sqlite else [])
        for database, transport in configs:
            print(f"engine: {database} / {transport}, {workers} worker(s), {args.runs} runs...", flush=True)
            log_dir = log_root / f"{database}-{transport}-{workers}"
            log_dir.mkdir(parents=True, exist_ok=True)
            config = {
                "runs": args.runs,
                "workers": workers,
                "transport": transport,
                "paced_runs": args.paced_runs,
                "paced_load": args.paced_load,
                "timeout": timeout,
                "log_dir": str(log_dir),
                "conn_max_age": args.conn_max_age,
                "starts_during_load": args.starts_during_load,
                "sqlite_options": args.sqlite_options,
                "workflow": args.workflow,
            }
            tmp = tempfile.mkdtemp(prefix="dwe-bench-sqlite-") if database == "sqlite" else None
            url = pg_url if tmp is None else f"sqlite:///{tmp}/bench.sqlite3"
            try:
                results.append(run_engine(config, url, tmp))
            except subprocess.CalledProcessError as exc:
                results.append(
                    {
                        "kind": "engine",
                        "database": database,
                        "transport": transport,
                        "workers": workers,
                        "error": (exc.stderr or "").strip().splitlines()[-1:] or str(exc),
                        "log_dir": str(log_dir),
                    }
                )
                print(f"   FAILED: {results[-1]['error']} (logs: {log_dir})", flush=True)
        for result in results[first:]:
            result["round"] = round_no

    report(results, info, args)


def report(results: list[dict[str, Any]], info: dict[str, Any], args: argparse.Namespace) -> None:
    baseline = {(r["round"], r["workers"]): r["jobs_per_s"] for r in results if r["kind"] == "raw-rq"}
    rows = []
    for r in results:
        if r.get("error"):
            rows.append([f"engine {r['database']}/{r['transport']}", r["workers"], "FAILED", *["-"] * 10])
            continue
        if r["kind"] == "raw-rq":
            rows.append(
                [
                    "raw RQ no-op jobs",
                    r["workers"],
                    r["jobs_per_s"],
                    "-",
                    "1.00",
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    r["worker_cpu_ms_per_job"],
                    "-",
                    r["other_cpu_s"],
                ]
            )
            continue
        base = baseline.get((r["round"], r["workers"]))
        ratio = r["backlog_stages_per_s"] / base if base else None
        r["x_raw_rq"] = ratio
        rows.append(
            [
                f"engine {r['database']}/{r['transport']}",
                r["workers"],
                r["backlog_stages_per_s"],
                r["backlog_runs_per_s"],
                f"{ratio:.2f}" if ratio else "-",
                r["paced_latency_ms_p50"],
                r["paced_latency_ms_p95"],
                r["paced_latency_ms_p99"],
                r["paced_gap_ms_p50"],
                r["paced_gap_ms_p95"],
                r["worker_cpu_ms_per_stage"],
                r["postgres_cpu_ms_per_stage"] if r["database"] == "postgresql" else "-",
                r["other_cpu_s"],
            ]
        )
    print()
    print(
        table(
            [
                "configuration",
                "workers",
                "stages/s",
                "runs/s",
                "x raw RQ",
                "lat p50 ms",
                "lat p95 ms",
                "lat p99 ms",
                "gap p50 ms",
                "gap p95 ms",
                "worker CPU ms/stage",
                "PG CPU ms/stage",
                "other CPU s",
            ],
            rows,
            title=f"Throughput: {args.runs} runs x 4 no-op stages (backlog); latency/gap: {args.paced_runs} paced runs "
            f"at {args.paced_load:.0%} of backlog rate; CONN_MAX_AGE={args.conn_max_age}",
        )
    )
    extra = [
        [
            f"engine {r['database']}/{r['transport']}",
            r["workers"],
            r["start_ms_per_run"],
            r["backlog_latency_ms_p50"],
            r["backlog_latency_ms_p99"],
            r["rq_messages_per_stage"] if r["rq_messages_per_stage"] else "-",
            r["maintenance_cpu_s"],
            json.dumps(r["statuses"]),
            json.dumps(r.get("job_attempts")),
            r.get("worker_tracebacks", "-"),
        ]
        for r in results
        if r["kind"] == "engine" and not r.get("error")
    ]
    if extra:
        print()
        print(
            table(
                [
                    "configuration",
                    "workers",
                    "engine.start ms",
                    "backlog lat p50 ms",
                    "backlog lat p99 ms",
                    "RQ msgs/stage",
                    "maint. CPU s",
                    "run statuses",
                    "job attempts",
                    "tracebacks",
                ],
                extra,
            )
        )
    if args.rounds > 1:
        print()
        print(
            table(
                ["configuration", "workers", "rounds", "stages/s (median)", "x raw RQ (median)", "x raw RQ (each)"],
                _medians(results),
            )
        )
    for r in results:
        if r.get("error"):
            print(f"FAILED: engine {r['database']}/{r['transport']}, {r['workers']} worker(s): {r['error']}")
    path = write_json(args.name, {"machine": info, "args": vars(args), "results": results})
    print(f"\nwrote {path}")


def _medians(results: list[dict[str, Any]]) -> list[list[Any]]:
    import statistics

    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in results:
        if r.get("error"):
            continue
        name = "raw RQ no-op jobs" if r["kind"] == "raw-rq" else f"engine {r['database']}/{r['transport']}"
        groups.setdefault((name, r["workers"]), []).append(r)
    rows = []
    for (name, workers), items in groups.items():
        rates = [r.get("jobs_per_s") or r.get("backlog_stages_per_s") for r in items]
        ratios = [r["x_raw_rq"] for r in items if r.get("x_raw_rq")]
        rows.append(
            [
                name,
                workers,
                len(items),
                statistics.median(rates),
                f"{statistics.median(ratios):.2f}" if ratios else "1.00",
                " ".join(f"{x:.2f}" for x in ratios) or "-",
            ]
        )
    return rows


if __name__ == "__main__":
    main()
