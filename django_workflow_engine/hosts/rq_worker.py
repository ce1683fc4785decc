"""The RQ transport: the job function RQ calls with a job id, and the RQ worker that runs it (JSON
serializer; a warm shutdown ends a chain of eager continuations; RQ's scheduler stops when its worker is gone)."""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..adapters.rq import flush_withdrawals, ring, withdraw_later
from ..kernel.execution import JobOutcome
from .jobs import STOPPING, Batcher, current_worker_id, drop_broken_connections, execute_batch, execute_claimed
from .wiring import default_kernel

if TYPE_CHECKING:
    from ..kernel import Kernel

logger = logging.getLogger("django_workflow_engine.worker")


def execute_job(job_id: str) -> str:
    """The RQ job function: claim the database job row, execute it with a lease heartbeat, record the outcome
    and transition the run. A message for a job that is no longer PENDING (already done, cancelled, or
    executed by another path) is a harmless no-op."""
    outcome = execute_job_by_id(str(job_id))
    return outcome.outcome if outcome is not None else "skipped"


def execute_job_by_id(job_id: str, kernel: Kernel | None = None) -> JobOutcome | None:
    """Claim and execute one job by id (the RQ path); its outcome, or ``None`` if it was not claimable.

    With ``CONTINUE_IN_WORKER``, the worker then keeps going without the queue while the database has due jobs:
    it claims the next one (highest priority, oldest first) and withdraws its message, until nothing is due,
    a stop is requested, or half of the message's RQ timeout has passed (RQ interrupts a message that runs
    past its timeout; the other half is left for the stage running at that moment)."""
    from ..conf import settings

    drop_broken_connections()
    kernel = default_kernel(kernel)
    worker_id = current_worker_id()
    # The messages of jobs taken without them (siblings, and jobs taken from the database below) are withdrawn
    # a few at a time (``withdraw_later``), and the rest when this message ends: most were never rung (quiet
    # doorbell), and a message left in the queue a little longer only costs the worker that pops it a claim
    # that finds the job taken.
    try:
        job = kernel.jobs.claim(job_id, worker_id, kernel.clock.now())
        until = _message_deadline()
        # A message whose job is taken (a duplicate, or one withdrawn too late) still woke this worker: it
        # looks in the database for due work like any other.
        outcome = execute_claimed(kernel, job, worker_id, until=until) if job is not None else None
        if not settings.CONTINUE_IN_WORKER:
            return outcome
        batcher = Batcher(kernel)
        while not STOPPING.is_set() and (until is None or time.monotonic() < until):
            drop_broken_connections()
            jobs = batcher.dequeue(kernel, worker_id)
            if not jobs:
                return outcome
            withdraw_later([job.id for job in jobs])
            batcher.observe(execute_batch(kernel, jobs, worker_id, until=until))
        # Leaving with work possibly due: while the queue held messages, new jobs were not rung (see ``ring``),
        # so make sure one message announces the next due job to whichever worker is free.
        now = kernel.clock.now()
        ring([j.id for j in kernel.jobs.due_pending(now, now, 1)])
        return outcome
    finally:
        flush_withdrawals()


def _message_deadline() -> float | None:
    """``time.monotonic()`` at half of the current RQ message's timeout; ``None`` outside RQ or without one."""
    from rq import get_current_job
    from rq.queue import Queue

    message = get_current_job()
    if message is None:
        return None
    timeout = message.timeout or Queue.DEFAULT_TIMEOUT
    if timeout is None or timeout < 0:
        return None
    return time.monotonic() + timeout / 2


@dataclass
class RQWorkerSettings:
    """What :func:`run_rq` needs of its :class:`~.worker.Worker`."""

    queue_names: list[str]
    worker_id: str
    burst: bool
    fork: bool
    stopping: threading.Event
    install_signals: Callable[[], None]


def run_rq(options: RQWorkerSettings) -> int:
    """Run an RQ worker on the queues until it stops (with ``burst``: until they are empty), waiting for Redis
    first; returns how many messages it processed."""
    import django_rq
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from rq import SimpleWorker
    from rq import Worker as ForkingWorker
    from rq.serializers import JSONSerializer

    queues = [django_rq.get_queue(name, serializer=JSONSerializer) for name in options.queue_names]
    worker_class = _rq_worker_class(ForkingWorker if options.fork else SimpleWorker)
    processed = 0
    while _wait_for_redis(options, queues[0].connection):
        rq_worker = worker_class(
            queues,
            connection=queues[0].connection,
            serializer=JSONSerializer,
            name=f"{options.worker_id}:{time.monotonic_ns() % 10**6}",
        )
        try:
            rq_worker.work(burst=options.burst, with_scheduler=True, logging_level="WARNING")
        except (RedisConnectionError, RedisTimeoutError) as exc:
            # Lost between the ping and RQ's own start-up (RQ rides out losses once it is working).
            logger.warning("worker %s: lost Redis (%s); waiting for it", options.worker_id, exc)
            continue
        finally:
            processed += rq_worker.successful_job_count + rq_worker.failed_job_count
        break
    return processed


def _wait_for_redis(options: RQWorkerSettings, connection: Any) -> bool:
    """Block until Redis answers a PING, retrying with backoff (1 s doubling to 30 s) and a log line per
    attempt, so a worker started before Redis (or while it restarts) waits instead of crash-looping under
    a service manager. Returns False when a stop was requested while waiting."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    delay = 1.0
    waited = False
    while not options.stopping.is_set():
        try:
            connection.ping()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            if not waited:
                options.install_signals()  # RQ installs its own once it starts; until then a stop ends the wait
            waited = True
            logger.warning(
                "worker %s: Redis at %s is unreachable (%s); retrying in %.0f s",
                options.worker_id,
                _redis_address(connection),
                exc,
                delay,
            )
            options.stopping.wait(delay)
            delay = min(delay * 2, 30.0)
            continue
        if waited:
            address = _redis_address(connection)
            logger.info("worker %s: Redis at %s is reachable; starting", options.worker_id, address)
        return True
    return False


def _redis_address(connection: Any) -> str:
    kwargs = getattr(getattr(connection, "connection_pool", None), "connection_kwargs", {}) or {}
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


def _rq_worker_class(base: type) -> type:
    """``base`` (an RQ worker class) that also tells the engine when a warm shutdown is requested, so a
    chain of eager continuations ends after the current stage."""

    class EngineRQWorker(base):
        def request_stop(self, signum: Any, frame: Any) -> None:
            STOPPING.set()
            super().request_stop(signum, frame)

        def subscribe(self) -> None:
            # RQ's command listener with a 1 s wait instead of 60: a burst worker that finishes before its
            # listener has read the SUBSCRIBE reply unsubscribes, and redis-py's listener then waits the whole
            # interval for a subscription that never comes while RQ joins it (rq/rq#1613): a 60 s hang at exit.
            self.pubsub = self.connection.pubsub()
            self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
            self.pubsub_thread = self.pubsub.run_in_thread(
                sleep_time=1.0, daemon=True, exception_handler=self._pubsub_exception_handler
            )

        # RQ builds its scheduler inside ``work()``; the engine's scheduler subclass is swapped in as it is
        # stored, before its process is forked.
        @property
        def scheduler(self) -> Any:
            return self.__dict__.get("_engine_scheduler")

        @scheduler.setter
        def scheduler(self, value: Any) -> None:
            if value is not None and not isinstance(value, _orphan_aware_scheduler()):
                value.__class__ = _orphan_aware_scheduler()
            self.__dict__["_engine_scheduler"] = value

    EngineRQWorker.__name__ = base.__name__
    return EngineRQWorker


@functools.cache
def _orphan_aware_scheduler() -> type:
    """RQ's scheduler, which also stops when its worker is gone.

    RQ forks the scheduler as a child of the worker process and stops it when the worker shuts down; a worker
    killed outright (SIGKILL, the OOM killer) never does, and the orphaned scheduler would loop, holding its
    lock, for as long as the machine runs. This one notices at its next heartbeat (every second) that its
    parent changed and stops the way a requested stop does (locks released, death registered)."""
    from rq.scheduler import RQScheduler

    class OrphanAwareScheduler(RQScheduler):
        def start(self) -> Any:
            self._engine_parent = os.getpid()
            return super().start()

        def heartbeat(self) -> None:
            parent = getattr(self, "_engine_parent", None)
            if parent is not None and os.getppid() != parent and not self._stop_requested:
                logger.warning("RQ scheduler %s: its worker (pid %d) is gone; stopping", os.getpid(), parent)
                self.request_stop()
            super().heartbeat()

    return OrphanAwareScheduler
