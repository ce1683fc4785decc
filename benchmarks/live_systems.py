"""The four systems of ``live.py`` as its driver process sees them: start one run, count the finished ones, and
the time of the last completion each system recorded (see ``live.py`` for what each one runs)."""

from __future__ import annotations

import json
import os
from typing import Any

from benchmarks._common import BENCH_REDIS_DB, PG_BASE, PYTHON, REDIS_BASE, redis_conn

SYSTEMS = ("engine", "engine-db", "celery", "dbos", "rq")
PEERS = ("celery", "dbos", "rq")
STEPS = 3
DBOS_DB = os.environ.get("BENCH_DBOS_DB", "dwe_bench_dbos")
RAW_QUEUE = "bench-live-raw"


# -- the systems (each runs in its own driver process) ----------------------------------------------------------


class System:
    """One system under test, as its driver sees it."""

    name = ""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.redis = redis_conn()
        self.ids: list[str] = []

    def worker_commands(self, workers: int) -> list[list[str]]:
        raise NotImplementedError

    def ready(self, workers: int) -> bool:
        from benchmarks.live_peers import READY_KEY

        return int(self.redis.scard(READY_KEY)) >= workers

    def start(self, i: int) -> None:
        raise NotImplementedError

    def done(self) -> int:
        """How many of the started runs are finished."""
        raise NotImplementedError

    def last_completion(self) -> float:
        """Epoch seconds of the last completion the system recorded."""
        raise NotImplementedError

    def after_warmup(self) -> None:
        """Forget the warm-up run: only the timed runs are counted."""
        self.ids.clear()

    def failed(self) -> int:
        """How many of the started runs did not succeed (after they all finished)."""
        raise NotImplementedError

    def close(self) -> None:
        """After the workers stopped."""


class Engine(System):
    name = "engine"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        from benchmarks._common import reset_engine_tables, setup_django

        setup_django()
        reset_engine_tables()
        from django_workflow_engine import engine
        from django_workflow_engine.models import WorkflowRun

        self.engine, self.model = engine, WorkflowRun

    def worker_commands(self, workers: int) -> list[list[str]]:
        run = [PYTHON, "-m", "django"]
        return [[*run, "runworker", "--transport", "rq", "--worker-id", f"live-{i}"] for i in range(workers)] + [
            [*run, "runmaintenance"]
        ]

    def ready(self, workers: int) -> bool:
        from rq import Worker

        return len(Worker.all(connection=self.redis)) >= workers

    def start(self, i: int) -> None:
        self.ids.append(self.engine.start("bench-seq3", {"n": i}).id)

    def _finished(self) -> Any:
        return self.model.objects.filter(pk__in=self.ids, status__in=["COMPLETED", "FAILED", "CANCELLED"])

    def done(self) -> int:
        return self._finished().count()

    def last_completion(self) -> float:
        from django.db.models import Max

        return self._finished().aggregate(t=Max("completed_at"))["t"].timestamp()

    def failed(self) -> int:
        return self.model.objects.filter(pk__in=self.ids).exclude(status="COMPLETED").count()


class EngineDatabase(Engine):
    """The engine on its database transport: no Redis at all; workers claim from the job table and wake on
    PostgreSQL's LISTEN/NOTIFY doorbell."""

    name = "engine-db"

    def __init__(self, config: dict[str, Any]) -> None:
        extra = json.loads(os.environ.get("BENCH_ENGINE_SETTINGS", "{}"))
        os.environ["DWE_ENGINE_SETTINGS"] = json.dumps({"TRANSPORT": "database", **extra})
        super().__init__(config)

    def worker_commands(self, workers: int) -> list[list[str]]:
        run = [PYTHON, "-m", "django"]
        return [[*run, "runworker", "--transport", "database", "--worker-id", f"live-db-{i}"] for i in range(workers)]

    def ready(self, workers: int) -> bool:
        from django_workflow_engine.models import WorkflowWorker

        return WorkflowWorker.objects.filter(stopped_at__isnull=True).count() >= workers


class CeleryPeer(System):
    name = "celery"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        from benchmarks import live_peers

        if live_peers.celery_app is None:
            raise ImportError("celery is not installed (pip install -e '.[bench]')")
        self.app, self.chain, self.results, self.first_pending = live_peers.celery_app, live_peers.celery_chain, [], 0

    def after_warmup(self) -> None:
        self.results.clear()
        self.first_pending = 0

    def worker_commands(self, workers: int) -> list[list[str]]:
        from benchmarks.live_peers import CELERY_QUEUE

        return [
            [
                *(PYTHON, "-m", "celery", "-A", "benchmarks.live_peers:celery_app", "worker", "--pool", "solo"),
                *("--concurrency", "1", "-Q", CELERY_QUEUE, "--loglevel", "WARNING", "-n", f"live{i}@%h"),
                *("--without-gossip", "--without-mingle", "--without-heartbeat"),
            ]
            for i in range(workers)
        ]

    def start(self, i: int) -> None:
        self.results.append(self.chain(self.app))

    def done(self) -> int:
        # Chains finish roughly in order: only look past the first one not seen finished.
        while self.first_pending < len(self.results) and self.results[self.first_pending].ready():
            self.first_pending += 1
        return self.first_pending

    def last_completion(self) -> float:
        import datetime as dt

        latest = None
        for result in self.results:
            done = result.date_done
            if done.tzinfo is None:
                done = done.replace(tzinfo=dt.UTC)
            latest = done if latest is None or done > latest else latest
        assert latest is not None
        return latest.timestamp()

    def failed(self) -> int:
        return sum(1 for r in self.results if r.state != "SUCCESS")


class DbosPeer(System):
    name = "dbos"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        import psycopg
        from dbos import DBOSClient

        self.url = PG_BASE.replace("postgres://", "postgresql://") + DBOS_DB
        self.db = psycopg.connect(PG_BASE + DBOS_DB, autocommit=True)
        if self.db.execute("SELECT to_regclass('dbos.workflow_status')").fetchone()[0]:  # type: ignore[index]
            self.db.execute("TRUNCATE dbos.workflow_status CASCADE")
        self.client_class, self.client = DBOSClient, None

    def worker_commands(self, workers: int) -> list[list[str]]:
        args = [str(self.config["dbos_concurrency"]), str(self.config["dbos_poll"])]
        return [[PYTHON, "-m", "benchmarks.live_peers", "dbos", self.url, *args] for _ in range(workers)]

    def start(self, i: int) -> None:
        from benchmarks.live_peers import DBOS_QUEUE, DBOS_WORKFLOW

        if self.client is None:  # after the workers created the system database's schema
            self.client = self.client_class(system_database_url=self.url)
        handle = self.client.enqueue({"queue_name": DBOS_QUEUE, "workflow_name": DBOS_WORKFLOW})
        self.ids.append(handle.get_workflow_id())

    def _count(self, where: str) -> Any:
        return self.db.execute(
            f"SELECT count(*), max(updated_at) FROM dbos.workflow_status WHERE workflow_uuid = ANY(%s) AND {where}",
            [self.ids],
        ).fetchone()

    def done(self) -> int:
        return int(self._count("status IN ('SUCCESS', 'ERROR', 'CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')")[0])

    def last_completion(self) -> float:
        return float(self._count("status = 'SUCCESS'")[1]) / 1000

    def failed(self) -> int:
        return len(self.ids) - int(self._count("status = 'SUCCESS'")[0])

    def close(self) -> None:
        if self.client is not None:
            self.client.destroy()
        self.db.close()


class RawRQ(System):
    name = "rq"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        from rq import Queue
        from rq.serializers import JSONSerializer

        self.queue = Queue(RAW_QUEUE, connection=self.redis, serializer=JSONSerializer)
        self.warmup_jobs = 0

    def after_warmup(self) -> None:
        self.warmup_jobs = self._jobs_done()

    def worker_commands(self, workers: int) -> list[list[str]]:
        return [[PYTHON, "-m", "benchmarks.rq_raw", f"{REDIS_BASE}{BENCH_REDIS_DB}", RAW_QUEUE] for _ in range(workers)]

    def ready(self, workers: int) -> bool:
        from rq import Worker

        return len(Worker.all(connection=self.redis)) >= workers

    def start(self, i: int) -> None:
        from benchmarks.rq_raw import enqueue

        enqueue(self.queue, STEPS)

    def _jobs_done(self) -> int:
        from rq import Worker

        return sum(w.successful_job_count + w.failed_job_count for w in Worker.all(connection=self.redis))

    def done(self) -> int:
        return (self._jobs_done() - self.warmup_jobs) // STEPS

    def last_completion(self) -> float:
        # The workers note their last call in memory and write it to Redis when they stop (see rq_raw.py).
        times = {k.decode(): v.decode() for k, v in self.redis.hgetall("bench:raw:times").items()}
        return max(float(v) for k, v in times.items() if k.endswith(":last") and v != "None")

    def failed(self) -> int:
        return 0


CLASSES: dict[str, type[System]] = {
    "engine": Engine,
    "engine-db": EngineDatabase,
    "celery": CeleryPeer,
    "dbos": DbosPeer,
    "rq": RawRQ,
}
