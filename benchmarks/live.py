"""Live phase, side by side: one driver process starts N runs while W workers execute them (issue 21).

    .venv/bin/python benchmarks/live.py                      # 300 runs, 2 workers, engine + Celery + DBOS + raw RQ
    .venv/bin/python benchmarks/live.py --rounds 3           # three interleaved rounds (use this on a shared machine)
    .venv/bin/python benchmarks/live.py --quick              # smoke run: 50 runs, 1 round
    .venv/bin/python benchmarks/live.py --systems engine,celery --runs 500 --workers 2

Each system does the same work: N "runs" of three no-op steps in sequence, started one at a time by one driver
process as fast as it can while W worker processes (already up, a warm-up run done) execute them. Timed from the
driver's first start to the last completion the system recorded; stages/s = 3N / that window.

* ``engine``: workflow ``bench-seq3`` (``a -> b -> c``, no-op stages) started with ``engine.start`` on PostgreSQL
  (database ``BENCH_PG_DB``, default ``dwe_bench``), ``TRANSPORT="rq"``; W ``manage.py runworker`` processes and
  one ``runmaintenance`` (its CPU is counted with the workers'). Last completion: the runs' ``completed_at``.
* ``engine-db``: the same on the engine's database transport (``TRANSPORT="database"``): no Redis at all; W
  ``runworker --transport database`` processes claim from the job table and, when idle, wait for PostgreSQL's
  doorbell (``pg_notify`` in each start's one statement, ``LISTEN`` in the workers). The summary gives its
  ratios beside the engine's.
* ``celery`` (Celery 5.7, the ``bench`` extra): ``chain(noop.si(), noop.si(), noop.si()).apply_async()``, Redis
  broker and result backend, W ``celery worker --pool solo`` processes (``--without-gossip --without-mingle
  --without-heartbeat``; Celery's defaults otherwise: prefetch 4, early ack). Last completion: the last task's
  ``date_done`` in the result backend.
* ``dbos`` (DBOS Transact 3.4, the ``bench`` extra): a workflow of three ``@DBOS.step`` no-ops, enqueued with
  ``DBOSClient.enqueue`` on a DBOS queue in its own database ``BENCH_DBOS_DB`` (default ``dwe_bench_dbos``) of the
  same PostgreSQL; W worker processes (``DBOS.launch()``) on DBOS's queue defaults: no per-worker concurrency
  limit, a polling interval of 1 s (``--dbos-concurrency``, ``--dbos-poll``; the defaults gave DBOS its best
  ratio to Celery here: a worker's poll takes the whole backlog). Last completion: the workflows' ``updated_at``.
* ``rq``: raw RQ, as in ``throughput.py``: three independent no-op jobs per run (one ``enqueue_many``; no chaining,
  so this is the transport's ceiling rather than the same work), W ``SimpleWorker`` processes. Last completion:
  the last job's end, noted in the worker's memory.

Rounds alternate the systems (the order rotates each round): the machine's speed drifts, so the engine is compared
only with the peers of its own round; the summary gives the median of those per-round ratios. Start latency is
each start call as the driver sees it (``engine.start`` returning the run; ``apply_async``; ``enqueue``).

Redis: db ``BENCH_REDIS_DB`` (13 unless set) is FLUSHDB-ed before every phase, never any other db. Results:
``benchmarks/results/<name>.json`` (default ``live``).
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    BENCH_PG_DB,
    BENCH_REDIS_DB,
    PG_BASE,
    PYTHON,
    ROOT,
    child_env,
    cpu_by_command,
    cpu_delta,
    cpu_seconds,
    ensure_pg_database,
    machine,
    migrate,
    percentile,
    pg_backend_cpu,
    redis_conn,
    spawn,
    stop,
    system_cpu_seconds,
    table,
    write_json,
)
from benchmarks.live_systems import CLASSES, DBOS_DB, PEERS, STEPS, SYSTEMS


def wait(predicate: Any, timeout: float, procs: Sequence[subprocess.Popen], logs: Sequence[Path], what: str) -> None:
    """Poll ``predicate`` until it holds; fail at once, naming its log, if a worker process exits."""
    deadline = time.monotonic() + timeout
    log_dir = logs[0].parent
    while not predicate():
        exited = [
            f"{log.name} (exit code {p.returncode})" for p, log in zip(procs, logs, strict=True) if p.poll() is not None
        ]
        if exited:
            raise RuntimeError(f"{what}: worker process(es) exited early: {', '.join(exited)}; logs in {log_dir}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not done after {timeout:.0f} s; logs in {log_dir}")
        time.sleep(0.05)


def child(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """One system's phase, in its own process: this process is the driver."""
    conn = redis_conn()
    conn.flushdb()
    system = CLASSES[name](config)
    runs, workers, log_dir = config["runs"], config["workers"], Path(config["log_dir"])
    commands = system.worker_commands(workers)
    logs = [log_dir / f"{name}-{i}.log" for i in range(len(commands))]
    procs = [spawn(cmd, dict(os.environ), log) for cmd, log in zip(commands, logs, strict=True)]
    try:
        wait(lambda: system.ready(workers), 180, procs, logs, f"{name}: workers up")
        system.start(-1)  # warm-up: one run through the whole path
        wait(lambda: system.done() >= 1, 120, procs, logs, f"{name}: warm-up run")
        system.after_warmup()
        pids = [p.pid for p in procs]
        own_dbs = [BENCH_PG_DB, DBOS_DB]
        own0 = pg_backend_cpu(own_dbs)
        cpu0, sys0, me0 = cpu_by_command(), system_cpu_seconds(), cpu_seconds(os.getpid())
        workers0 = sum(cpu_seconds(pid) for pid in pids)
        latencies = []
        t0 = time.time()
        for i in range(runs):
            t = time.perf_counter()
            system.start(i)
            latencies.append((time.perf_counter() - t) * 1000)
        submit_s = time.time() - t0
        wait(lambda: system.done() >= runs, config["timeout"], procs, logs, f"{name}: {runs} runs")
        observed = time.time()
        worker_cpu = sum(cpu_seconds(pid) for pid in pids) - workers0
        cpu1, sys1, me1 = cpu_by_command(), system_cpu_seconds(), cpu_seconds(os.getpid())
        own_pg_cpu = cpu_delta(own0, pg_backend_cpu(own_dbs))
    finally:
        stop(procs)
    last = system.last_completion()
    failed = system.failed()
    system.close()
    conn.flushdb()
    window = last - t0
    pg_cpu = cpu1.get("postgres", 0) - cpu0.get("postgres", 0)
    redis_cpu = cpu1.get("redis-server", 0) - cpu0.get("redis-server", 0)
    driver_cpu = me1 - me0
    stages = runs * STEPS
    return {
        "system": name,
        "runs": runs,
        "workers": workers,
        "stages": stages,
        "not_successful": failed,
        "window_s": window,
        "observed_window_s": observed - t0,
        "stages_per_s": stages / window,
        "runs_per_s": runs / window,
        "submit_s": submit_s,
        "start_ms_p50": percentile(latencies, 50),
        "start_ms_p95": percentile(latencies, 95),
        "start_ms_mean": statistics.fmean(latencies),
        "worker_cpu_ms_per_stage": 1000 * worker_cpu / stages,
        "driver_cpu_ms_per_run": 1000 * driver_cpu / runs,
        "postgres_cpu_ms_per_stage": 1000 * pg_cpu / stages,
        "own_postgres_cpu_ms_per_stage": 1000 * own_pg_cpu / stages,
        "redis_cpu_ms_per_stage": 1000 * redis_cpu / stages,
        "other_cpu_s": max(0.0, (sys1 - sys0) - worker_cpu - driver_cpu - pg_cpu - redis_cpu),
        "dbos_concurrency": config["dbos_concurrency"] if name == "dbos" else None,
        "dbos_poll_s": config["dbos_poll"] if name == "dbos" else None,
    }


def run_phase(name: str, config: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        proc = subprocess.run(
            [PYTHON, str(Path(__file__).resolve()), "--child", name, "--config", json.dumps(config), "--out", out.name],
            env=env,
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        if proc.returncode:
            lines = (proc.stderr or "").strip().splitlines()
            return {"system": name, "error": lines[-1] if lines else f"exit code {proc.returncode}"}
        return json.loads(Path(out.name).read_text())


def round_order(systems: Sequence[str], round_no: int) -> list[str]:
    """The systems in the order of round ``round_no``: rotated by one each round, so none is always first."""
    shift = round_no % len(systems)
    return [*systems[shift:], *systems[:shift]]


# -- report ---------------------------------------------------------------------------------------------------


def ratios(results: Sequence[dict[str, Any]], engine: str = "engine") -> dict[str, list[float]]:
    """``engine``'s stages/s (the engine on RQ, or ``engine-db``) over each peer's, per round (only rounds where
    both measured), by peer."""
    by_round: dict[int, dict[str, float]] = {}
    for r in results:
        if not r.get("error"):
            by_round.setdefault(r["round"], {})[r["system"]] = r["stages_per_s"]
    out: dict[str, list[float]] = {}
    for round_no in sorted(by_round):
        rates = by_round[round_no]
        if engine not in rates:
            continue
        for peer in PEERS:
            if peer in rates:
                out.setdefault(peer, []).append(rates[engine] / rates[peer])
    return out


def summary(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per system: rounds, median stages/s, and (peers) the median and each round's ratio of the engine (and of
    the engine on its database transport) to it."""
    each, each_db = ratios(results), ratios(results, "engine-db")
    rows = []
    for name in SYSTEMS:
        ok = [r for r in results if r["system"] == name and not r.get("error")]
        if not ok:
            continue
        row: dict[str, Any] = {
            "system": name,
            "rounds": len(ok),
            "stages_per_s_median": statistics.median(r["stages_per_s"] for r in ok),
            "start_ms_p50_median": statistics.median(r["start_ms_p50"] for r in ok),
            "start_ms_p95_median": statistics.median(r["start_ms_p95"] for r in ok),
        }
        if name in each:
            row["engine_ratio_median"] = statistics.median(each[name])
            row["engine_ratio_each"] = each[name]
        if name in each_db:
            row["engine_db_ratio_median"] = statistics.median(each_db[name])
            row["engine_db_ratio_each"] = each_db[name]
        rows.append(row)
    return rows


def report(results: list[dict[str, Any]], info: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    each = ratios(results)
    rows = []
    for r in results:
        if r.get("error"):
            rows.append([r["system"], r["round"] + 1, "FAILED", *["-"] * 10])
            continue
        rows.append(
            [
                r["system"],
                r["round"] + 1,
                r["stages_per_s"],
                r["start_ms_p50"],
                r["start_ms_p95"],
                r["worker_cpu_ms_per_stage"],
                r["driver_cpu_ms_per_run"],
                r.get("own_postgres_cpu_ms_per_stage", r["postgres_cpu_ms_per_stage"]),
                r["redis_cpu_ms_per_stage"],
                r["other_cpu_s"],
                r["not_successful"],
                r["submit_s"],
                r["window_s"],
            ]
        )
    headers = ["system", "round", "stages/s", "start p50 ms", "start p95 ms", "worker CPU ms/stage"]
    headers += [
        "driver CPU ms/run",
        "PG CPU ms/stage (own DBs)",
        "Redis CPU ms/stage",
        "other CPU s",
        "not ok",
        "starts s",
        "window s",
    ]
    print()
    print(
        table(
            headers,
            rows,
            title=f"Live: one driver starts {args.runs} runs x {STEPS} no-op steps while {args.workers} workers "
            "execute them (first start -> last completion)",
        )
    )
    rows = []
    for s in summary(results):
        ratio, ratio_db = s.get("engine_ratio_median"), s.get("engine_db_ratio_median")
        rows.append(
            [
                s["system"],
                s["rounds"],
                s["stages_per_s_median"],
                f"{ratio:.2f}" if ratio else "-",
                " ".join(f"{x:.2f}" for x in s.get("engine_ratio_each", [])) or "-",
                f"{ratio_db:.2f}" if ratio_db else "-",
                " ".join(f"{x:.2f}" for x in s.get("engine_db_ratio_each", [])) or "-",
                s["start_ms_p50_median"],
                s["start_ms_p95_median"],
            ]
        )
    print()
    headers = ["system", "rounds", "stages/s (median)", "engine x this (median)", "engine x this (each round)"]
    headers += ["engine-db x this (median)", "engine-db x this (each round)"]
    print(table([*headers, "start p50 ms (median)", "start p95 ms (median)"], rows))
    for r in results:
        if r.get("error"):
            print(f"FAILED: {r['system']}, round {r['round'] + 1}: {r['error']}")
    data = {"machine": info, "args": vars(args), "results": results, "summary": summary(results), "ratios": each}
    data["ratios_engine_db"] = ratios(results, "engine-db")
    path = write_json(args.name, data)
    print(f"\nwrote {path}")
    return data


# -- main -----------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300, help="runs started by the driver per phase (default 300)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per system (default 2)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated, of " + ", ".join(SYSTEMS))
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (the order rotates each round)")
    parser.add_argument(
        "--dbos-concurrency", type=int, default=0, help="DBOS workflows at once per worker (0: no limit)"
    )
    parser.add_argument("--dbos-poll", type=float, default=1.0, help="DBOS queue polling interval, s (default 1)")
    parser.add_argument("--timeout", type=float, help="seconds to wait for a phase's runs (default max(120, runs/2))")
    parser.add_argument("--quick", action="store_true", help="smoke run: 50 runs, one round")
    parser.add_argument("--name", default="live", help="results/<name>.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        Path(args.out).write_text(json.dumps(child(args.child, json.loads(args.config)), default=str))
        return None
    if args.quick:
        args.runs, args.rounds = min(args.runs, 50), 1
    systems = [s for s in args.systems.split(",") if s]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        parser.error(f"--systems: unknown {', '.join(unknown)} (known: {', '.join(SYSTEMS)})")
    info = machine()
    pg_url = PG_BASE + BENCH_PG_DB
    env = child_env(pg_url, {"TRANSPORT": "rq"})
    env["BENCH_REDIS_DB"] = str(BENCH_REDIS_DB)
    if "engine" in systems:
        ensure_pg_database(BENCH_PG_DB)
        migrate(env)
    if "dbos" in systems:
        ensure_pg_database(DBOS_DB)
    log_root = Path(tempfile.mkdtemp(prefix="dwe-bench-live-"))
    config = {
        "runs": args.runs,
        "workers": args.workers,
        "timeout": args.timeout or max(120.0, args.runs / 2),
        "dbos_concurrency": args.dbos_concurrency,
        "dbos_poll": args.dbos_poll,
        "log_dir": str(log_root),
    }
    results = []
    for round_no in range(args.rounds):
        for name in round_order(systems, round_no):
            print(f"round {round_no + 1}: {name}, {args.runs} runs, {args.workers} workers...", flush=True)
            result = run_phase(name, config, env)
            result["round"] = round_no
            if result.get("error"):
                print(f"   FAILED: {result['error']} (logs: {log_root})", flush=True)
            results.append(result)
    return report(results, info, args)


if __name__ == "__main__":
    main()
