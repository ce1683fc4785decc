"""The Redis doorbell: an RQ message per job id, so an idle worker wakes within milliseconds.

The message carries only the job id and uses RQ's JSON serializer: nothing is ever unpickled from Redis. The
database row stays the truth; a lost message is re-sent by ``runmaintenance``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rq.serializers import JSONSerializer

logger = logging.getLogger("django_workflow_engine.rq")

JOB_FUNCTION = "django_workflow_engine.adapters.rq.execute_job"


_QUEUES: dict[tuple[str, str], Any] = {}


def get_queue(name: str | None = None):  # type: ignore[no-untyped-def]
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


def ring(job_ids: Iterable[str], at: datetime | None = None) -> int:
    """Enqueue one RQ message per job id (at ``at`` if given and in the future). Never raises: if Redis
    is down the jobs stay PENDING in the database and maintenance re-sends their messages."""
    ids = list(job_ids)
    if not ids:
        return 0
    try:
        queue = get_queue()
        if at is not None and at > datetime.now(UTC):
            for job_id in ids:
                queue.enqueue_at(at, JOB_FUNCTION, job_id, result_ttl=0, failure_ttl=3600)
        else:
            with queue.connection.pipeline() as pipe:
                queue.enqueue_many(
                    [
                        queue.prepare_data(JOB_FUNCTION, args=(job_id,), result_ttl=0, failure_ttl=3600)
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


def execute_job(job_id: str) -> str:
    """The RQ job function: claim the database job row, execute it with a lease heartbeat, record the outcome
    and transition the run. A message for a job that is no longer PENDING (already done, cancelled, or
    executed by another path) is a harmless no-op."""
    from ..hosts.worker import execute_job_by_id

    outcome = execute_job_by_id(str(job_id))
    return outcome.outcome if outcome is not None else "skipped"
