"""The Redis doorbell: an RQ message per job id, so an idle worker wakes within milliseconds.

The message carries only the job id and uses RQ's JSON serializer: nothing is ever unpickled from Redis. The
database row stays the truth; a lost message is re-sent by ``runmaintenance``.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from rq.serializers import JSONSerializer

logger = logging.getLogger("django_workflow_engine.rq")

# The function RQ calls with a job id (a dotted path: the adapter enqueues it without importing the host).
JOB_FUNCTION = "django_workflow_engine.hosts.rq_worker.execute_job"


_QUEUES: dict[tuple[str, str], Any] = {}

# Messages to withdraw in one round trip (see ``withdraw_later``), and how many wait at most.
WITHDRAW_BATCH = 16
# Remove a message from the queue list and, only if it was still there, its job hash: a message a worker has
# already popped is that worker's to finish (RQ reads and updates its hash until it is done; deleting it under
# RQ fails the message with ``InvalidJobOperation`` and files it in the failed registry). Atomic in Redis.
WITHDRAW_SCRIPT = """
if redis.call('LREM', KEYS[1], ARGV[1], ARGV[2]) > 0 then
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""
_LATER: list[str] = []
_LATER_LOCK = threading.Lock()


def get_queue(name: str | None = None):
    """The engine's RQ queue, one object per process and configuration. django-rq builds a new queue, Redis
    client and connection pool on every call, and each new connection costs a handshake (and RQ an ``INFO``
    for the server version): reusing them keeps ringing the doorbell to one round trip."""
    import django_rq
    from django.conf import settings as django_settings

    from ..conf import settings

    queue_name = name or settings.RQ_QUEUE
    config = repr(sorted((getattr(django_settings, "RQ_QUEUES", {}) or {}).get(queue_name, {}).items()))
    key = (queue_name, config)
    queue = _QUEUES.get(key)
    if queue is None:
        queue = _QUEUES[key] = django_rq.get_queue(queue_name, serializer=JSONSerializer)
    return queue


def not_before(at: datetime) -> datetime:
    """``at`` rounded up to a whole second: RQ's scheduler keeps whole-second timestamps (it would drop the
    fraction and deliver the message up to a second early, to a job that is not due yet and so is skipped)."""
    if at.microsecond:
        at = at.replace(microsecond=0) + timedelta(seconds=1)
    return at


def ring(job_ids: Iterable[str], at: datetime | None = None) -> int:
    """Enqueue one RQ message per job id (at ``at`` if given and in the future). Never raises: if Redis
    is down the jobs stay PENDING in the database and maintenance re-sends their messages.

    A message's RQ id is its job's id, so whoever claims the job can :func:`withdraw` the message. The one
    exception is a job rung from inside its own message (a retry): RQ deletes the running message's data when
    it finishes, so that message gets an id of its own.

    With ``CONTINUE_IN_WORKER``, jobs due now are not rung while the queue already holds messages: no worker is
    idle then (an idle worker would have taken them), and whichever worker takes one of those messages goes
    on to take due jobs from the database, these included (``hosts.rq_worker.execute_job_by_id``). A worker
    leaving that loop with work still due rings one message for it, and maintenance re-sends messages for due
    jobs unclaimed after ``REDELIVER_SECONDS`` (a worker killed mid-loop). Returns how many were rung."""
    from ..conf import settings

    ids = list(job_ids)
    if not ids:
        return 0
    if _LATER and not set(_LATER).isdisjoint(ids):
        # A job taken with its message not yet withdrawn is rung again (a retry): withdraw first, or the
        # withdrawal would drop the new message.
        flush_withdrawals()
    try:
        from rq import get_current_job

        queue = get_queue()
        due_now = at is None or at <= datetime.now(UTC)
        if due_now and settings.CONTINUE_IN_WORKER and queue.connection.llen(queue.key) > 0:
            return 0
        current = get_current_job()
        running = current.id if current is not None else None

        def message_id(job_id: str) -> str:
            return job_id if job_id != running else f"{job_id}-{uuid.uuid4().hex[:12]}"

        if at is not None and at > datetime.now(UTC):
            when = not_before(at)
            for job_id in ids:
                queue.enqueue_at(when, JOB_FUNCTION, job_id, job_id=message_id(job_id), result_ttl=0, failure_ttl=3600)
        else:
            with queue.connection.pipeline() as pipe:
                queue.enqueue_many(
                    [
                        queue.prepare_data(
                            JOB_FUNCTION, args=(job_id,), job_id=message_id(job_id), result_ttl=0, failure_ttl=3600
                        )
                        for job_id in ids
                    ],
                    pipeline=pipe,
                )
                pipe.execute()
    except Exception:
        logger.warning(
            "could not enqueue RQ messages for %d job(s); maintenance will re-send them", len(ids), exc_info=True
        )
        return 0
    return len(ids)


def withdraw(job_ids: Iterable[str], *, oldest: bool = False) -> int:
    """Drop the queued RQ messages of jobs that were claimed without them (a worker took a parallel sibling
    itself, or took the next due job straight from the database). Best effort and never raises: a message
    left behind (already being delivered, or re-sent by maintenance) reaches a worker whose claim finds the
    job taken, and is skipped. ``oldest``: the message is near the head of the queue (else near the tail,
    where a message rung moments ago is). Returns how many were dropped."""
    ids = list(job_ids)
    if not ids:
        return 0
    try:
        from rq.job import Job

        queue = get_queue()
        with queue.connection.pipeline(transaction=False) as pipe:
            for job_id in ids:
                # EVAL with the script's text, not a registered script: a pipeline of those first asks Redis
                # whether the script is loaded (SCRIPT EXISTS), a second round trip on every withdrawal.
                pipe.eval(WITHDRAW_SCRIPT, 2, queue.key, Job.key_for(job_id), 1 if oldest else -1, job_id)
            replies = pipe.execute()
    except Exception:
        logger.warning("could not withdraw %d RQ message(s); they will be skipped", len(ids), exc_info=True)
        return 0
    return sum(1 for removed in replies if removed)


def withdraw_later(job_ids: Iterable[str]) -> None:
    """:func:`withdraw` these messages (near the head of the queue) together with others, once
    ``WITHDRAW_BATCH`` are waiting or at :func:`flush_withdrawals`: one Redis round trip for many jobs taken
    straight from the database. :func:`ring` flushes first when it re-rings one of them."""
    with _LATER_LOCK:
        _LATER.extend(job_ids)
        full = len(_LATER) >= WITHDRAW_BATCH
    if full:
        flush_withdrawals()


def flush_withdrawals() -> int:
    """Withdraw the messages :func:`withdraw_later` collected; how many were dropped."""
    with _LATER_LOCK:
        ids = _LATER[:]
        _LATER.clear()
    return withdraw(ids, oldest=True)
