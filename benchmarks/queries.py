"""SQL statements and Redis commands per executed stage, by phase, on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/queries.py              # M=50 runs (200 stages) per database
    .venv/bin/python benchmarks/queries.py --quick      # M=10
    .venv/bin/python benchmarks/queries.py --sql        # also print every statement of one stage execution

Workflow ``bench`` (``a -> b||c -> d``, no-op stages). For each database, in a child process:

* **drain**: ``engine.start`` x M, then ``CaptureQueriesContext`` around ``engine.run_until_idle()``
  (the in-process path: ``dequeue`` + ``run_job``), statements / 4M stages;
* **one run, stage by stage**: ``CaptureQueriesContext`` around each single ``run_job`` (and its ``dequeue``),
  so the cost of a stage whose transition is a no-op (``b``), one that starts a group (``a``, ``c``) and one
  that completes the run (``d``) are visible separately;
* **RQ path** (``TRANSPORT="rq"``): M runs started (doorbell rung on commit), then the real RQ worker of
  ``hosts/worker.py`` + ``hosts/rq_worker.py`` in burst mode in this process (claim by id + ``run_job``), with SQL captured and Redis
  commands counted with ``MONITOR`` (only Redis db 13 is counted). The same is done for raw RQ no-op jobs.

Statements are attributed to phases by wrapping engine methods from the outside (the engine is not changed):
``dequeue``/``claim``, ``job.execute`` (its idempotency key, pre-flight reads, phase 1 transaction,
phase 3 transaction, events appended to the outbox inside them), ``job.complete``, ``run.transition``
(incl. ``prepare_group``), drain-loop housekeeping (``run.claimPending``, ``stage.pollSuspended``,
``outbox.flush``). ``COMMIT`` is not a captured statement in Django; it is counted separately, and so is the
implicit ``BEGIN`` psycopg sends before the first statement of each transaction on PostgreSQL.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
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
    ensure_pg_database,
    machine,
    migrate,
    redis_conn,
    table,
    write_json,
)

PG_DB = BENCH_PG_DB
STAGES_PER_RUN = 4
LABELS: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("labels", default=())


@contextlib.contextmanager
def label(name: str):  # type: ignore[no-untyped-def]
    token = LABELS.set((*LABELS.get(), name))
    try:
        yield
    finally:
        LABELS.reset(token)


JOB_PHASE: dict[str, Any] = {"name": "", "atomics": 0}


def current_labels() -> tuple[str, ...]:
    """The label stack, with the current step of ``job.execute`` after it (unless an inner label wins)."""
    labels = LABELS.get()
    if "job.execute" in labels and labels[-1] == "job.execute":
        return (*labels, JOB_PHASE["name"])
    if "job.execute" in labels and labels[-1] == "outbox":
        return (*labels[:-1], JOB_PHASE["name"], "outbox")
    return labels


def phase_of(labels: tuple[str, ...]) -> str:
    """A readable phase name from the label stack (outermost command first, outbox marked)."""
    if not labels:
        return "(unlabelled)"
    parts = [p for p in labels if p != "outbox"]
    name = " / ".join(dict.fromkeys(parts))
    return name + (" [outbox]" if "outbox" in labels else "")


def normalize(sql: str) -> str:
    sql = re.sub(r"\s+", " ", sql)
    sql = re.sub(r"'[^']*'", "'?'", sql)
    sql = re.sub(r"\b\d+\b", "N", sql)
    sql = re.sub(r"(%s, )+%s", "%s...", sql)
    sql = re.sub(r"\(%s\.\.\.\)(, \(%s\.\.\.\))+", "(%s...)...", sql)
    return sql


class Recorder:
    """Records every statement (with the phase labels active when it ran) and every COMMIT."""

    def __init__(self) -> None:
        self.rows: list[tuple[tuple[str, ...], str, float]] = []
        self.enabled = True

    def __call__(self, execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            if self.enabled:
                self.rows.append((current_labels(), sql, time.perf_counter() - t))

    def mark(self) -> int:
        return len(self.rows)


def instrument(recorder: Recorder) -> None:
    """Wrap engine methods from the outside so each statement is attributed to a phase."""
    from django.db import connection

    from django_workflow_engine.adapters import job_queue, persistence
    from django_workflow_engine.kernel import execution
    from django_workflow_engine.kernel import kernel as kernel_module

    def wrap(cls: Any, name: str, tag: str | None = None) -> None:
        original = getattr(cls, name)

        def wrapper(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            with label(tag or name):
                return original(self, *args, **kwargs)

        setattr(cls, name, wrapper)

    wrap(job_queue.OrmJobQueue, "dequeue")
    wrap(job_queue.OrmJobQueue, "claim", "claim (by id, RQ path)")
    wrap(job_queue.OrmJobQueue, "complete", "job.complete")
    wrap(job_queue.OrmJobQueue, "enqueue", "enqueue jobs")
    wrap(persistence.OrmPersistence, "append_events", "outbox")
    wrap(persistence.OrmPersistence, "acquire_idempotency_key", "idempotency key")
    wrap(persistence.OrmPersistence, "complete_idempotency_key", "idempotency key")

    original_dispatch = kernel_module.Kernel.dispatch

    def dispatch(self, command):  # type: ignore[no-untyped-def]
        with label(command.type):
            if command.type == "job.execute":
                JOB_PHASE["name"], JOB_PHASE["atomics"] = "pre-flight reads", 0
            return original_dispatch(self, command)

    kernel_module.Kernel.dispatch = dispatch
    # Hosts run a job's stage through ``execution.execute`` directly (no command dispatch): label it the same.
    original_execute = execution.execute

    def execute(*args, **kwargs):  # type: ignore[no-untyped-def]
        with label("job.execute"):
            JOB_PHASE["name"], JOB_PHASE["atomics"] = "pre-flight reads", 0
            return original_execute(*args, **kwargs)

    execution.execute = execute
    original_atomic = persistence.OrmPersistence.atomic

    @contextlib.contextmanager
    def atomic(self):  # type: ignore[no-untyped-def]
        if "job.execute" not in LABELS.get():
            with original_atomic(self):
                yield
            return
        JOB_PHASE["atomics"] += 1
        JOB_PHASE["name"] = {1: "phase 1 txn (stage RUNNING)", 2: "phase 3 txn (outcome)"}.get(
            JOB_PHASE["atomics"], "other txn"
        )
        try:
            with original_atomic(self):
                yield
        finally:
            JOB_PHASE["name"] = "between/after transactions"

    persistence.OrmPersistence.atomic = atomic
    connection.execute_wrappers.append(recorder)

    # COMMIT is not a statement Django's cursor sees: count it on the connection.
    original_commit = connection.commit

    def commit():  # type: ignore[no-untyped-def]
        if recorder.enabled:
            recorder.rows.append((current_labels(), "COMMIT", 0.0))
        return original_commit()

    connection.commit = commit


def summarize(rows: list[tuple[tuple[str, ...], str, float]], stages: int, vendor: str) -> dict[str, Any]:
    statements = [r for r in rows if r[1] != "COMMIT"]
    commits = [r for r in rows if r[1] == "COMMIT"]
    by_phase: dict[str, dict[str, float]] = defaultdict(lambda: {"statements": 0, "commits": 0, "db_ms": 0.0})
    for labels, sql, seconds in rows:
        entry = by_phase[phase_of(labels)]
        if sql == "COMMIT":
            entry["commits"] += 1
        else:
            entry["statements"] += 1
            entry["db_ms"] += seconds * 1000
    kinds = Counter(normalize(sql).split(" ")[0] for _, sql, _ in statements)
    top = Counter((phase_of(labels), normalize(sql)) for labels, sql, _ in statements)
    begins = len(commits) if vendor == "postgresql" else 0
    return {
        "stages": stages,
        "statements": len(statements),
        "statements_per_stage": len(statements) / stages,
        "commits_per_stage": len(commits) / stages,
        "round_trips_per_stage": (len(statements) + len(commits) + begins) / stages,
        "db_ms_per_stage": sum(s for _, sql, s in statements) * 1000 / stages,
        "by_phase": {
            k: {
                "statements_per_stage": v["statements"] / stages,
                "commits_per_stage": v["commits"] / stages,
                "db_ms_per_stage": v["db_ms"] / stages,
            }
            for k, v in sorted(by_phase.items(), key=lambda kv: -kv[1]["statements"])
        },
        "by_kind_per_stage": {k: v / stages for k, v in kinds.most_common()},
        "top_statements": [
            {"phase": phase, "sql": sql[:400], "per_stage": n / stages} for (phase, sql), n in top.most_common(25)
        ],
    }


class RedisMonitor:
    """Counts Redis commands on the benchmark db with MONITOR (other databases are ignored)."""

    STOP = "dwe-bench-monitor-stop"

    def __init__(self) -> None:
        self.commands: Counter[str] = Counter()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = redis_conn()
        with conn.monitor() as m:
            self._ready.set()
            for item in m.listen():
                command = item.get("command", "")
                if self.STOP in command:
                    return
                if int(item.get("db", -1)) != BENCH_REDIS_DB:
                    continue
                self.commands[command.split(" ", 1)[0].upper()] += 1

    def __enter__(self) -> RedisMonitor:
        self._thread.start()
        self._ready.wait(5)
        time.sleep(0.2)
        return self

    def __exit__(self, *exc: Any) -> None:
        redis_conn().echo(self.STOP)
        self._thread.join(10)


# -- child ----------------------------------------------------------------------------------------------------


def child(config: dict[str, Any]) -> dict[str, Any]:
    from benchmarks._common import reset_engine_tables, setup_django

    setup_django()
    from django.db import connection
    from django.test.utils import CaptureQueriesContext, override_settings

    from django_workflow_engine import engine
    from django_workflow_engine.kernel import run_job

    runs = config["runs"]
    vendor = connection.vendor
    reset_engine_tables()
    redis_conn().flushdb()
    recorder = Recorder()
    instrument(recorder)
    connection.ensure_connection()
    connection.queries_log.__init__(maxlen=10**7)  # CaptureQueriesContext keeps at most 9,000 by default
    out: dict[str, Any] = {"database": vendor}

    # engine.start
    mark = recorder.mark()
    with CaptureQueriesContext(connection) as captured, label("engine.start"):
        for _ in range(runs):
            engine.start("bench", {})
    out["engine_start"] = {
        "statements_per_run": len(captured.captured_queries) / runs,
        "commits_per_run": sum(1 for r in recorder.rows[mark:] if r[1] == "COMMIT") / runs,
    }

    # drain
    mark = recorder.mark()
    t = time.perf_counter()
    with CaptureQueriesContext(connection) as captured:
        result = engine.run_until_idle()
    elapsed = time.perf_counter() - t
    stages = result.completed
    assert stages == runs * STAGES_PER_RUN, result
    drain = summarize(recorder.rows[mark:], stages, vendor)
    drain["captured_queries_per_stage"] = len(captured.captured_queries) / stages
    drain["wall_ms_per_stage"] = elapsed * 1000 / stages
    out["drain"] = drain

    # one run, stage by stage
    kernel = engine.kernel
    engine.start("bench", {})
    per_stage = []
    for _ in range(STAGES_PER_RUN):
        mark = recorder.mark()
        with CaptureQueriesContext(connection) as dq:
            job = kernel.jobs.dequeue("bench", kernel.clock.now())
        with CaptureQueriesContext(connection) as captured:
            outcome = run_job(kernel, job)
        rows = recorder.rows[mark:]
        per_stage.append(
            {
                "stage": job.stage_id,
                "transition": outcome.transition,
                "dequeue_statements": len(dq.captured_queries),
                "run_job_statements": len(captured.captured_queries),
                "commits": sum(1 for r in rows if r[1] == "COMMIT"),
                "sql": [(phase_of(lbl), sql) for lbl, sql, _ in rows],
            }
        )
    out["per_stage"] = per_stage

    # RQ path: real RQ worker (burst) in this process, SQL + Redis commands
    settings_rq = {**__import__("django.conf", fromlist=["settings"]).settings.WORKFLOW_ENGINE, "TRANSPORT": "rq"}
    with override_settings(WORKFLOW_ENGINE=settings_rq):
        from django_workflow_engine.hosts.worker import Worker

        redis_conn().flushdb()
        with RedisMonitor() as start_monitor:
            for _ in range(runs):
                engine.start("bench", {})
        mark = recorder.mark()
        with RedisMonitor() as worker_monitor:
            Worker(burst=True, transport="rq", worker_id="bench-rq").run()
        rq_stages = runs * STAGES_PER_RUN
        rq_summary = summarize(recorder.rows[mark:], rq_stages, vendor)
        rq_summary["redis_commands_per_stage_worker"] = sum(worker_monitor.commands.values()) / rq_stages
        rq_summary["redis_commands_per_run_start"] = sum(start_monitor.commands.values()) / runs
        rq_summary["redis_worker_commands_per_stage"] = {
            k: v / rq_stages for k, v in worker_monitor.commands.most_common()
        }
        rq_summary["redis_start_commands_per_run"] = {k: v / runs for k, v in start_monitor.commands.most_common()}
        out["rq_worker"] = rq_summary
    return out


def raw_rq_commands(jobs: int) -> dict[str, Any]:
    """Redis commands per raw RQ no-op job (same worker configuration), for comparison."""
    from rq import Queue, SimpleWorker
    from rq.serializers import JSONSerializer

    from benchmarks.rq_raw import enqueue

    conn = redis_conn()
    conn.flushdb()
    queue = Queue("bench-raw", connection=conn, serializer=JSONSerializer)
    with RedisMonitor() as enq:
        enqueue(queue, jobs)
    with RedisMonitor() as work:
        SimpleWorker([queue], connection=conn, serializer=JSONSerializer).work(
            burst=True, with_scheduler=True, logging_level="WARNING"
        )
    conn.flushdb()
    return {
        "jobs": jobs,
        "enqueue_commands_per_job": sum(enq.commands.values()) / jobs,
        "worker_commands_per_job": sum(work.commands.values()) / jobs,
        "worker_commands": {k: v / jobs for k, v in work.commands.most_common()},
    }


# -- main -----------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50, help="runs per database (default 50 = 200 stages)")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--sql", action="store_true", help="print every statement of one run, stage by stage")
    parser.add_argument("--quick", action="store_true", help="10 runs")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        Path(args.out).write_text(json.dumps(child(json.loads(args.child)), default=str))
        return
    if args.quick:
        args.runs = min(args.runs, 10)

    info = machine()
    results: dict[str, Any] = {}
    for database in args.databases.split(","):
        if database == "postgresql":
            ensure_pg_database(PG_DB)
            env = child_env(PG_BASE + PG_DB)
        else:
            tmp = tempfile.mkdtemp(prefix="dwe-bench-q-")
            env = child_env(f"sqlite:///{tmp}/bench.sqlite3", tmp=tmp)
        migrate(env)
        print(f"{database}: {args.runs} runs...", flush=True)
        with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
            subprocess.run(
                [PYTHON, str(Path(__file__).resolve()), "--child", json.dumps({"runs": args.runs}), "--out", out.name],
                env=env,
                cwd=ROOT,
                check=True,
            )
            results[database] = json.loads(Path(out.name).read_text())
    os.environ["PYTHONPATH"] = str(ROOT)
    raw = raw_rq_commands(args.runs * STAGES_PER_RUN)
    report(results, raw, info, args)


def report(results: dict[str, Any], raw: dict[str, Any], info: dict[str, Any], args: argparse.Namespace) -> None:
    for database, r in results.items():
        d = r["drain"]
        print()
        print(
            f"== {database}: {d['stages']} stages via engine.run_until_idle(): "
            f"{d['statements_per_stage']:.1f} statements/stage (CaptureQueriesContext, which also logs BEGIN and "
            f"COMMIT: {d['captured_queries_per_stage']:.1f}), {d['commits_per_stage']:.1f} COMMITs/stage, "
            f"~{d['round_trips_per_stage']:.1f} round trips/stage, {d['db_ms_per_stage']:.2f} ms in SQL/stage, "
            f"{d['wall_ms_per_stage']:.2f} ms wall/stage"
        )
        print(
            f"   engine.start: {r['engine_start']['statements_per_run']:.1f} statements + "
            f"{r['engine_start']['commits_per_run']:.1f} COMMIT per run"
        )
        rows = [
            [phase, v["statements_per_stage"], v["commits_per_stage"], v["db_ms_per_stage"]]
            for phase, v in d["by_phase"].items()
        ]
        print(table(["phase (drain)", "statements/stage", "COMMITs/stage", "SQL ms/stage"], rows))
        print()
        print(
            table(
                ["statement kind", "per stage"],
                [[k, v] for k, v in d["by_kind_per_stage"].items()],
            )
        )
        print()
        print(
            table(
                ["stage", "transition", "dequeue queries", "run_job queries", "of which COMMIT"],
                [
                    [s["stage"], s["transition"] or "-", s["dequeue_statements"], s["run_job_statements"], s["commits"]]
                    for s in r["per_stage"]
                ],
                title="one run, stage by stage (CaptureQueriesContext around dequeue and around run_job; incl. BEGIN/COMMIT)",
            )
        )
        print()
        print(
            table(
                ["per stage", "phase", "statement"],
                [[t["per_stage"], t["phase"], t["sql"][:150]] for t in d["top_statements"][:15]],
                title="top statements (drain)",
            )
        )
        q = r["rq_worker"]
        print()
        print(
            f"   RQ worker path (claim by id): {q['statements_per_stage']:.1f} statements/stage, "
            f"{q['commits_per_stage']:.1f} COMMITs/stage; Redis: {q['redis_commands_per_stage_worker']:.1f} "
            f"commands/stage in the worker, {q['redis_commands_per_run_start']:.1f} per engine.start"
        )
        print(
            table(
                ["phase (RQ worker)", "statements/stage", "COMMITs/stage"],
                [[p, v["statements_per_stage"], v["commits_per_stage"]] for p, v in q["by_phase"].items()],
            )
        )
        if args.sql:
            for s in r["per_stage"]:
                print(f"\n-- stage {s['stage']} (transition: {s['transition']})")
                for phase, sql in s["sql"]:
                    print(f"   [{phase}] {normalize(sql)[:220]}")
    print()
    print(
        f"raw RQ no-op job: {raw['enqueue_commands_per_job']:.1f} Redis commands to enqueue, "
        f"{raw['worker_commands_per_job']:.1f} in the worker per job"
    )
    summary_rows = [
        [
            db,
            r["drain"]["statements_per_stage"],
            r["drain"]["commits_per_stage"],
            r["drain"]["round_trips_per_stage"],
            r["rq_worker"]["statements_per_stage"],
            r["rq_worker"]["redis_commands_per_stage_worker"],
            raw["worker_commands_per_job"],
        ]
        for db, r in results.items()
    ]
    print()
    print(
        table(
            [
                "database",
                "SQL stmts/stage (drain)",
                "COMMITs/stage",
                "round trips/stage",
                "SQL stmts/stage (RQ worker)",
                "Redis cmds/stage (RQ worker)",
                "Redis cmds/raw RQ job",
            ],
            summary_rows,
            title="Summary (target: <= 6 SQL queries per stage execution incl. its transition)",
        )
    )
    path = write_json("queries", {"machine": info, "args": vars(args), "results": results, "raw_rq": raw})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
