"""The Redis doorbell: an RQ message per job id, so an idle worker wakes within milliseconds.

The message carries only the job id and uses RQ's JSON serializer: nothing is ever unpickled from Redis. The
database row stays the truth; a lost message is re-sent by ``runmaintenance``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime

from rq.serializers import JSONSerializer

logger = logging.getLogger("django_workflow_engine.rq")

JOB_FUNCTION = "django_workflow_engine.adapters.rq.execute_job"


_SERVER_VERSIONS: dict[str, tuple[int, int, int]] = {}


def get_queue(name: str | None = None):  # type: ignore[no-untyped-def]
    """The engine's RQ queue. RQ asks Redis for its version (``INFO``) once per queue object, and django-rq
    makes a new queue object per call: the version is remembered per server here, saving that round trip on
    every enqueue."""
    import django_rq

    from ..conf import settings

    queue = django_rq.get_queue(name or settings.RQ_QUEUE, serializer=JSONSerializer)
    server = repr(sorted(queue.connection.connection_pool.connection_kwargs.items()))
    known = _SERVER_VERSIONS.get(server)
    if known is not None:
        queue.redis_server_version = known
    else:
        _SERVER_VERSIONS[server] = queue.get_redis_server_version()
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
