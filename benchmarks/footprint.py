"""Footprint: import time, worker start time, worker RSS idle and after 10,000 stages.

    .venv/bin/python benchmarks/footprint.py             # 10,000 stages through one worker (RQ transport)
    .venv/bin/python benchmarks/footprint.py --quick     # 1,000 stages
    .venv/bin/python benchmarks/footprint.py --transport database

* Import time: ``import django_workflow_engine`` in a fresh interpreter (median of 5, ``perf_counter`` around
  the import; ``-X importtime`` for the heaviest modules), and whether it pulled in litellm or Django; the same
  with the AI helper (``django_workflow_engine.ai`` and ``.ai.helper``) if it exists; ``django.setup()`` of the
  benchmark site for reference.
* Worker start: one run is started, then ``manage.py runworker``: time until the RQ worker is registered in
  Redis (RQ transport) and until that first run is COMPLETED.
* RSS (``VmRSS`` from ``/proc/<pid>/status``): idle after start, then after every 2,500 stages (runs are
  submitted in batches while the worker runs), and the peak (``VmHWM``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    PG_BASE,
    PYTHON,
    ROOT,
    child_env,
    ensure_pg_database,
    machine,
    migrate,
    proc_status,
    redis_conn,
    spawn,
    stop,
    table,
    write_json,
)

PG_DB = "dwe_bench"

IMPORT_PROBE = """
import sys, time
t = time.perf_counter()
for name in {modules!r}:
    __import__(name)
elapsed = time.perf_counter() - t
import json
print(json.dumps({{"seconds": elapsed, "litellm": "litellm" in sys.modules, "django": "django" in sys.modules,
                  "modules": len(sys.modules)}}))
"""


def import_time(modules: list[str], env: dict[str, str], repeat: int = 5) -> dict[str, Any]:
    samples = []
    last: dict[str, Any] = {}
    for _ in range(repeat):
        out = subprocess.run(
            [PYTHON, "-c", IMPORT_PROBE.format(modules=modules)], env=env, cwd=ROOT, capture_output=True, text=True
        )
        if out.returncode != 0:
            return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
        last = json.loads(out.stdout)
        samples.append(last["seconds"])
    heavy = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", "; ".join(f"import {m}" for m in modules)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    rows = []  # (self us, cumulative us, module)
    for line in heavy.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            parts = line[len("import time:") :].split("|")
            if parts[1].strip().isdigit():
                rows.append((int(parts[0]), int(parts[1]), parts[2].strip()))
    external = {}
    for self_us, _cum_us, name in rows:
        if not name.startswith("django_workflow_engine"):
            root = name.split(".")[0]
            external[root] = external.get(root, 0) + self_us
    return {
        "median_s": statistics.median(samples),
        "min_s": min(samples),
        "imports_litellm": last["litellm"],
        "imports_django": last["django"],
        "modules_loaded": last["modules"],
        "heaviest_packages_self_ms": [
            {"module": n, "ms": us / 1000} for n, us in sorted(external.items(), key=lambda kv: -kv[1])[:8]
        ],
        "engine_modules_self_ms": sum(s for s, _, n in rows if n.startswith("django_workflow_engine")) / 1000,
    }


def django_setup_time(env: dict[str, str]) -> float:
    code = "import time; t=time.perf_counter(); import django; django.setup(); print(time.perf_counter()-t)"
    samples = [
        float(subprocess.run([PYTHON, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True).stdout)
        for _ in range(3)
    ]
    return statistics.median(samples)


def child(config: dict[str, Any]) -> dict[str, Any]:
    from benchmarks._common import reset_engine_tables, setup_django

    setup_django()
    from django.db import OperationalError, connection

    from django_workflow_engine import engine
    from django_workflow_engine.models import WorkflowRun, WorkflowStage

    transport, stages_target = config["transport"], config["stages"]
    reset_engine_tables()
    conn = redis_conn()
    conn.flushdb()
    first = engine.start("bench", {}).id
    t0 = time.perf_counter()
    worker = spawn(
        [PYTHON, "-m", "django", "runworker", "--transport", transport, "--worker-id", "bench-footprint"],
        dict(os.environ),
        Path(config["log"]),
    )
    registered_s = None
    first_run_s = None
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and (first_run_s is None or (transport == "rq" and registered_s is None)):
            if transport == "rq" and registered_s is None:
                from rq import Worker

                if Worker.all(connection=conn):
                    registered_s = time.perf_counter() - t0
            if first_run_s is None and WorkflowRun.objects.filter(pk=first, status="COMPLETED").exists():
                first_run_s = time.perf_counter() - t0
            time.sleep(0.01)
        time.sleep(3)
        samples = [{"stages": 4, "rss_kb": proc_status(worker.pid)}]
        batch_runs = 625  # 2,500 stages
        done_runs = 1
        t = time.perf_counter()
        while done_runs * 4 < stages_target:
            n = min(batch_runs, stages_target // 4 - done_runs)
            for _ in range(n):
                engine.start("bench", {})
            done_runs += n
            wait_until = time.monotonic() + 900
            while time.monotonic() < wait_until:
                try:
                    if WorkflowStage.objects.filter(status="COMPLETED").count() >= done_runs * 4:
                        break
                except OperationalError:  # e.g. PostgreSQL restarted by another program: reconnect and go on
                    connection.close()
                if worker.poll() is not None:
                    raise RuntimeError(f"worker exited; see {config['log']}")
                time.sleep(0.5)
            connection.close()
            samples.append({"stages": done_runs * 4, "rss_kb": proc_status(worker.pid)})
            print(f"   {samples[-1]['stages']:,} stages: RSS {samples[-1]['rss_kb'] / 1024:.1f} MB", flush=True)
        elapsed = time.perf_counter() - t
        peak = proc_status(worker.pid, "VmHWM")
    finally:
        stop([worker])
    return {
        "transport": transport,
        "start_to_registered_s": registered_s,
        "start_to_first_run_completed_s": first_run_s,
        "rss_samples": samples,
        "rss_idle_mb": samples[0]["rss_kb"] / 1024,
        "rss_final_mb": samples[-1]["rss_kb"] / 1024,
        "rss_growth_mb": (samples[-1]["rss_kb"] - samples[0]["rss_kb"]) / 1024,
        "rss_peak_mb": (peak or 0) / 1024,
        "stages": samples[-1]["stages"],
        "stages_phase_s": elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", type=int, default=10_000)
    parser.add_argument("--transport", default="rq", choices=["rq", "database"])
    parser.add_argument("--quick", action="store_true", help="1,000 stages")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        Path(args.out).write_text(json.dumps(child(json.loads(args.child)), default=str))
        return
    if args.quick:
        args.stages = 1000
    info = machine()

    bare = dict(os.environ, PYTHONPATH=str(ROOT))
    bare.pop("DJANGO_SETTINGS_MODULE", None)
    imports: dict[str, Any] = {"python -c pass": {}}
    t = time.perf_counter()
    for _ in range(5):
        subprocess.run([PYTHON, "-c", "pass"], check=True)
    imports["python -c pass"] = {"median_s": (time.perf_counter() - t) / 5, "note": "interpreter start, for scale"}
    imports["import django_workflow_engine"] = import_time(["django_workflow_engine"], bare)
    ai_modules = [m for m in ("django_workflow_engine.ai", "django_workflow_engine.ai.helper") if _exists(m)]
    has_ai = _exists("django_workflow_engine.ai.helper") or _has_files(ROOT / "django_workflow_engine" / "ai")
    if has_ai:
        imports["import django_workflow_engine + AI helper"] = import_time(
            ["django_workflow_engine", *ai_modules], bare
        )
    else:
        imports["import django_workflow_engine + AI helper"] = {
            "note": "django_workflow_engine/ai has no modules yet: not measured"
        }

    ensure_pg_database(PG_DB)
    env = child_env(PG_BASE + PG_DB, {"TRANSPORT": args.transport})
    migrate(env)
    imports["django.setup() of the benchmark site"] = {"median_s": django_setup_time(env)}

    import tempfile

    log = str(Path(tempfile.mkdtemp(prefix="dwe-footprint-")) / "worker.log")
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        subprocess.run(
            [
                PYTHON,
                str(Path(__file__).resolve()),
                "--child",
                json.dumps({"transport": args.transport, "stages": args.stages, "log": log}),
                "--out",
                out.name,
            ],
            env=env,
            cwd=ROOT,
            check=True,
        )
        worker = json.loads(Path(out.name).read_text())

    rows = []
    for name, r in imports.items():
        rows.append(
            [
                name,
                f"{r['median_s']:.3f}" if "median_s" in r else "-",
                str(r.get("imports_litellm", "-")),
                str(r.get("imports_django", "-")),
                r.get("note")
                or r.get("error")
                or ", ".join(f"{x['module']} {x['ms']:.0f} ms" for x in r.get("heaviest_packages_self_ms", [])[:4]),
            ]
        )
    print(table(["import", "seconds (median)", "litellm?", "django?", "heaviest / note"], rows, title="Import time"))
    print()
    print(
        table(
            ["worker (" + args.transport + ")", "value"],
            [
                ["start -> registered in Redis (s)", worker["start_to_registered_s"] or "-"],
                ["start -> first run COMPLETED (s)", worker["start_to_first_run_completed_s"]],
                ["RSS idle (MB)", worker["rss_idle_mb"]],
                [f"RSS after {worker['stages']:,} stages (MB)", worker["rss_final_mb"]],
                ["RSS growth (MB)", worker["rss_growth_mb"]],
                ["RSS peak, VmHWM (MB)", worker["rss_peak_mb"]],
                *[[f"RSS at {s['stages']:,} stages (MB)", s["rss_kb"] / 1024] for s in worker["rss_samples"]],
            ],
            title="Worker footprint (targets: idle RSS <= 120 MB, no growth; import <= 0.3 s without litellm)",
        )
    )
    path = write_json("footprint", {"machine": info, "args": vars(args), "imports": imports, "worker": worker})
    print(f"\nwrote {path}")


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _has_files(path: Path) -> bool:
    return path.is_dir() and any(p.suffix == ".py" for p in path.iterdir())


if __name__ == "__main__":
    main()
