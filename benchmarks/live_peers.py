"""The peers of ``live.py``: a Celery app and a DBOS Transact app doing the engine's no-op work.

Benchmark-only dependencies (the ``bench`` extra: ``celery[redis]``, ``dbos``); imported only by ``live.py``'s
peer phases and the worker processes it starts, never by the engine.

    python -m celery -A benchmarks.live_peers:celery_app worker --pool solo ...   # a Celery worker
    python -m benchmarks.live_peers dbos <system-database-url> <worker-concurrency> <polling-interval-s>

Each worker marks itself ready in Redis (``bench:live:ready``, a set of pids) once it can take work, so the
driver starts its timed phase only when all W workers are up. The Redis db is ``BENCH_REDIS_DB`` (13 unless set).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

REDIS_URL = "redis://127.0.0.1:6379/{}".format(int(os.environ.get("BENCH_REDIS_DB", "13")))
READY_KEY = "bench:live:ready"
CELERY_QUEUE = "bench-live"
DBOS_QUEUE = "bench_live"
DBOS_WORKFLOW = "bench_three"


def mark_ready() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).sadd(READY_KEY, os.getpid())


# -- Celery: chains of three no-op tasks; Redis broker and result backend; Celery's defaults otherwise ----------


def _celery_app() -> Any:
    from celery import Celery
    from celery.signals import worker_ready

    app = Celery("bench_live", broker=REDIS_URL, backend=REDIS_URL)
    app.conf.update(
        task_default_queue=CELERY_QUEUE,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )

    @app.task(name="bench.noop")
    def noop() -> None:
        return None

    worker_ready.connect(lambda **_: mark_ready(), weak=False)
    return app


def celery_chain(app: Any) -> Any:
    """One 'run': a chain of three no-op tasks (the AsyncResult of its last task)."""
    from celery import chain

    noop = app.tasks["bench.noop"]
    return chain(noop.si(), noop.si(), noop.si()).apply_async()


try:
    celery_app = _celery_app()
except ImportError:  # the bench extra is not installed: only the Celery phase needs it
    celery_app = None


# -- DBOS Transact: a workflow of three no-op steps, enqueued on a DBOS queue -----------------------------------


def dbos_config(system_database_url: str) -> dict[str, Any]:
    return {
        "name": "dwe-bench-live",
        "system_database_url": system_database_url,
        "log_level": "WARNING",
        "application_version": "bench-live-1",
    }


def _define_dbos_workflow() -> None:
    from dbos import DBOS

    @DBOS.step()
    def step_a() -> None:
        return None

    @DBOS.step()
    def step_b() -> None:
        return None

    @DBOS.step()
    def step_c() -> None:
        return None

    @DBOS.workflow(name=DBOS_WORKFLOW)
    def bench_three() -> None:
        step_a()
        step_b()
        step_c()


def dbos_worker(system_database_url: str, worker_concurrency: int, polling_interval: float) -> None:
    import signal

    from dbos import DBOS

    _define_dbos_workflow()
    DBOS(config=dbos_config(system_database_url))  # type: ignore[arg-type]
    DBOS.launch()
    DBOS.register_queue(
        DBOS_QUEUE,
        worker_concurrency=worker_concurrency or None,  # 0: no per-worker limit
        polling_interval_sec=polling_interval,
        on_conflict="always_update",
    )
    mark_ready()
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    while not stopping:
        time.sleep(0.1)
    DBOS.destroy(workflow_completion_timeout_sec=0)


if __name__ == "__main__":
    if sys.argv[1] == "dbos":
        dbos_worker(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
