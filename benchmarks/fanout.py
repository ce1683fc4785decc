"""Map (dynamic fan-out) throughput through real ``manage.py runworker`` processes, against plain stages.

    .venv/bin/python benchmarks/fanout.py                      # 10,000 items; 2 workers; PostgreSQL
    .venv/bin/python benchmarks/fanout.py --items 2000 --workers 1,2

Two phases per worker count, in the same program, on the same database (``BENCH_PG_DB``, default ``dwe_bench``):

1. **plain**: ``throughput.py``'s backlog phase on workflow ``bench`` (4 no-op stages per run) with items / 4 runs,
   so both phases execute the same number of stages: stages/s from the database rows.
2. **map**: one run of ``bench-map`` (``pipe(m_split).map(m_item).pipe(m_join)``) over ``--items`` no-op items.
   ``m_split`` and the fan-out run in this process first (one ``drain`` of one job, timed: **fan-out s** is that
   job, the list of 10,000 made and every item's record and job inserted); then W workers start and
   **items/s** = items / (first item ``started_at`` -> last item ``completed_at``).

The goal (issue 17): items/s at least 80 % of the plain stages/s.
"""

from __future__ import annotations

import argparse
import json
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
    spawn,
    stop,
    table,
    write_json,
)


def map_child(config: dict[str, Any]) -> dict[str, Any]:
    """One map run: fan-out timed in this process, the items executed by W ``runworker`` processes."""
    from benchmarks._common import reset_engine_tables, setup_django

    setup_django()
    from django.db import connection
    from django.db.models import Max, Min

    from django_workflow_engine import engine
    from django_workflow_engine.hosts.drain import drain
    from django_workflow_engine.models import WorkflowJob, WorkflowRun, WorkflowStage

    items, workers = config["items"], config["workers"]
    reset_engine_tables()
    run = engine.start("bench-map", {"n": items})
    t = time.perf_counter()
    drain(engine.kernel, max_jobs=1)  # m_split, and the fan-out in its outcome transaction
    fan_out_s = time.perf_counter() - t
    created = WorkflowStage.objects.filter(run=run, item_index__isnull=False).count()
    log_dir = Path(config["log_dir"])
    env = child_env(config["database_url"])
    procs = [
        spawn([PYTHON, "-m", "django", "runworker", "--worker-id", f"map-{i}"], env, log_dir / f"worker-{i}.log")
        for i in range(workers)
    ]
    procs.append(spawn([PYTHON, "-m", "django", "runmaintenance"], env, log_dir / "maintenance.log"))
    deadline = time.monotonic() + config["timeout"]
    try:
        while time.monotonic() < deadline:
            run.refresh_from_db()
            if run.status in ("COMPLETED", "FAILED", "CANCELLED"):
                break
            time.sleep(0.2)
    finally:
        stop(procs)
    connection.close()
    window = WorkflowStage.objects.filter(run=run, item_index__isnull=False).aggregate(
        first=Min("started_at"), last=Max("completed_at")
    )
    seconds = (window["last"] - window["first"]).total_seconds() if window["first"] and window["last"] else None
    attempts = WorkflowJob.objects.filter(run_id=run.id, stage_id__startswith="m_item[").aggregate(n=Max("attempt"))
    run = WorkflowRun.objects.get(pk=run.pk)
    return {
        "kind": "map",
        "workers": workers,
        "items": items,
        "status": run.status,
        "output": run.output,
        "items_created": created,
        "fan_out_s": round(fan_out_s, 3),
        "items_window_s": seconds,
        "items_per_s": items / seconds if seconds else None,
        "run_s": (run.completed_at - run.created_at).total_seconds() if run.completed_at else None,
        "max_item_attempt": attempts["n"],
    }


def _child(script: Path, config: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        proc = subprocess.run(
            [PYTHON, str(script), "--child", json.dumps(config), "--out", out.name],
            env=env,
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        if proc.returncode:
            sys.stderr.write(proc.stderr)
            raise subprocess.CalledProcessError(proc.returncode, proc.args, stderr=proc.stderr)
        return json.loads(Path(out.name).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10_000, help="items of the map (default 10,000)")
    parser.add_argument("--workers", default="2", help="worker counts (default 2)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for a phase")
    parser.add_argument("--name", default="fanout", help="results/<name>.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        Path(args.out).write_text(json.dumps(map_child(json.loads(args.child)), default=str))
        return

    url = PG_BASE + BENCH_PG_DB
    ensure_pg_database(BENCH_PG_DB)
    env = child_env(url)
    migrate(env)
    log_root = Path(tempfile.mkdtemp(prefix="dwe-bench-fanout-"))
    results: list[dict[str, Any]] = []
    here = Path(__file__).resolve()
    for workers in [int(w) for w in args.workers.split(",")]:
        log_dir = log_root / f"plain-{workers}"
        log_dir.mkdir(parents=True)
        print(f"plain: {args.items // 4} runs of 'bench' ({args.items} stages), {workers} worker(s)...", flush=True)
        plain = {
            "runs": args.items // 4,
            "workers": workers,
            "transport": "database",
            "paced_runs": 0,
            "paced_load": 0.5,
            "timeout": args.timeout,
            "log_dir": str(log_dir),
            "workflow": "bench",
        }
        row = _child(here.parent / "throughput.py", plain, env)
        results.append(row)
        log_dir = log_root / f"map-{workers}"
        log_dir.mkdir(parents=True)
        print(f"map: {args.items} items, {workers} worker(s)...", flush=True)
        config = {
            "items": args.items,
            "workers": workers,
            "timeout": args.timeout,
            "log_dir": str(log_dir),
            "database_url": url,
        }
        mapped = _child(here, config, env)
        mapped["plain_stages_per_s"] = row.get("backlog_stages_per_s")
        if mapped["items_per_s"] and mapped["plain_stages_per_s"]:
            mapped["items_vs_plain"] = mapped["items_per_s"] / mapped["plain_stages_per_s"]
        results.append(mapped)
    rows = [
        [
            r["workers"],
            f"{r['plain_stages_per_s']:.0f}" if r.get("plain_stages_per_s") else "-",
            f"{r['items_per_s']:.0f}" if r.get("items_per_s") else "-",
            f"{100 * r['items_vs_plain']:.0f} %" if r.get("items_vs_plain") else "-",
            f"{r['fan_out_s']:.2f}",
            r["status"],
        ]
        for r in results
        if r["kind"] == "map"
    ]
    print(table(["workers", "plain stages/s", "map items/s", "items/plain", "fan-out s", "run"], rows))
    write_json(args.name, {"machine": machine(), "items": args.items, "results": results})


if __name__ == "__main__":
    main()
