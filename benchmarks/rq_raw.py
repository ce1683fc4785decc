"""Raw RQ baseline: a no-op job function and a worker configured like the engine's (no Django).

The worker is an ``rq.SimpleWorker`` with the JSON serializer, ``with_scheduler=True`` and logging at WARNING,
exactly as ``manage.py runworker`` (``hosts/rq_worker.py``) builds it. The job function only notes the first and
last call times in memory; the worker writes them to Redis when it stops (SIGTERM), so the measurement adds no
Redis command per job.

    python -m benchmarks.rq_raw <redis-url> <queue>         # a worker (run by throughput.py)
"""

from __future__ import annotations

import os
import sys
import time

FUNCTION = "benchmarks.rq_raw.noop"
FIRST: float | None = None
LAST: float | None = None
CALLS = 0


def noop(payload: str) -> None:
    global FIRST, LAST, CALLS
    now = time.time()
    if FIRST is None:
        FIRST = now
    LAST = now
    CALLS += 1


def enqueue(queue, count: int, batch: int = 500) -> None:  # type: ignore[no-untyped-def]
    """Enqueue ``count`` no-op jobs the way the engine's doorbell does (``enqueue_many`` in a pipeline,
    ``result_ttl=0``, ``failure_ttl=3600``, one string argument)."""
    for start in range(0, count, batch):
        with queue.connection.pipeline() as pipe:
            queue.enqueue_many(
                [
                    queue.prepare_data(FUNCTION, args=(f"{i:032x}",), result_ttl=0, failure_ttl=3600)
                    for i in range(start, min(count, start + batch))
                ],
                pipeline=pipe,
            )
            pipe.execute()


def main() -> None:
    import redis
    from rq import Queue, SimpleWorker
    from rq.serializers import JSONSerializer

    url, name = sys.argv[1], sys.argv[2]
    conn = redis.Redis.from_url(url)
    queue = Queue(name, connection=conn, serializer=JSONSerializer)
    worker = SimpleWorker(
        [queue], connection=conn, serializer=JSONSerializer, name=f"raw-{os.getpid()}:{time.monotonic_ns() % 10**6}"
    )
    worker.work(burst=False, with_scheduler=True, logging_level="WARNING")
    # Run as ``-m benchmarks.rq_raw`` this file is ``__main__``; RQ imported the job function from the package.
    from benchmarks import rq_raw as jobs

    FIRST, LAST, CALLS = jobs.FIRST, jobs.LAST, jobs.CALLS
    conn.hset(
        "bench:raw:times",
        mapping={f"{os.getpid()}:first": repr(FIRST), f"{os.getpid()}:last": repr(LAST), f"{os.getpid()}:n": CALLS},
    )


if __name__ == "__main__":
    main()
