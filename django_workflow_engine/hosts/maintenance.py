"""The maintenance tick: everything that is not executing a stage.

Each step has its own error boundary: one failing step is logged and the others still run. Several
maintenance processes may run at once: every step is safe under concurrency (atomic claims, row locks,
version guards).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import close_old_connections, connections

from ..kernel import (
    ClaimPendingRuns,
    ExpireDeadlines,
    ExpireIdempotencyKeys,
    FlushOutbox,
    Kernel,
    ReapStaleLeases,
    ReapStuckRuns,
)
from .drain import poll_suspended
from .wiring import default_kernel

logger = logging.getLogger("django_workflow_engine.maintenance")


@dataclass
class MaintenanceResult:
    """What one tick did. ``errors`` names the steps that failed."""

    claimed: int = 0
    suspended_checked: int = 0
    resumed: int = 0
    stale_released: int = 0
    events_flushed: int = 0
    stuck_reaped: int = 0
    requeued: int = 0
    redispatched: int = 0
    keys_expired: int = 0
    runs_purged: int = 0
    deadlines_expired: int = 0
    ai_rows_purged: int = 0
    schedules_fired: int = 0
    errors: list[str] = field(default_factory=list)


def run_maintenance_tick(
    kernel: Kernel | None = None,
    *,
    worker_id: str = "maintenance",
    max_claims: int = 50,
    max_polls: int = 50,
    max_events: int = 500,
    max_expired_keys: int = 1000,
) -> MaintenanceResult:
    """One pass: fail runs past their deadline, fire due schedules (after syncing those declared in code), claim
    pending runs, poll due suspended stages (and transition the resumed runs), release
    stale leases, flush the outbox, reap stuck runs, re-send lost RQ messages, and delete up to
    ``max_expired_keys`` idempotency keys older than ``IDEMPOTENCY_KEY_TTL_SECONDS``, and purge finished runs
    per the ``RETENTION`` setting (at most its ``max_runs_per_tick``), and delete expired AI response cache
    entries and old rate-limit grants (when ``AI_CACHE`` / ``AI_RATE_LIMITS`` are set)."""
    from ..conf import settings

    kernel = default_kernel(kernel)
    result = MaintenanceResult()

    def step(name: str, fn: Any) -> None:
        try:
            fn()
        except Exception:
            logger.exception("maintenance step %r failed", name)
            result.errors.append(name)
            if connections["default"].in_atomic_block is False:
                close_old_connections()

    def deadlines() -> None:
        result.deadlines_expired = kernel.dispatch(ExpireDeadlines(max_runs=max_claims)).failed

    def claim() -> None:
        result.claimed = len(kernel.dispatch(ClaimPendingRuns(worker_id=worker_id, max_claims=max_claims)).claimed)

    def poll() -> None:
        polled = poll_suspended(kernel, max_polls)
        result.suspended_checked = polled.checked
        result.resumed = polled.resumed

    def leases() -> None:
        result.stale_released = kernel.dispatch(ReapStaleLeases(stale_after_seconds=settings.LEASE_SECONDS)).released

    def outbox() -> None:
        result.events_flushed = kernel.dispatch(FlushOutbox(max_events=max_events)).published

    def stuck() -> None:
        reaped = kernel.dispatch(ReapStuckRuns(stuck_after_seconds=settings.STUCK_RUN_SECONDS))
        result.stuck_reaped = reaped.failed
        result.requeued = reaped.requeued

    def redispatch() -> None:
        if settings.TRANSPORT == "rq":
            result.redispatched = redispatch_lost_messages(kernel, settings.REDELIVER_SECONDS)

    def idempotency() -> None:
        ttl = settings.IDEMPOTENCY_KEY_TTL_SECONDS
        if ttl is not None:
            command = ExpireIdempotencyKeys(older_than_seconds=ttl, max_keys=max_expired_keys)
            result.keys_expired = kernel.dispatch(command).expired

    def ai_traffic() -> None:
        from ..ai.purge import purge_ai_traffic

        result.ai_rows_purged = purge_ai_traffic(kernel.clock.now())

    def schedules() -> None:
        from .schedules import fire_due_schedules, sync_declared_schedules

        sync_declared_schedules(kernel)
        result.schedules_fired = fire_due_schedules(kernel).fired

    def retention() -> None:
        if settings.RETENTION is not None:
            from ..ops.retention import apply_retention

            result.runs_purged = apply_retention(now=kernel.clock.now())

    for name, fn in (
        ("deadlines", deadlines),
        ("schedules", schedules),  # first: a fired run's first stage is then due in this very tick
        ("claim", claim),
        ("poll", poll),
        ("leases", leases),
        ("outbox", outbox),
        ("stuck", stuck),
        ("redispatch", redispatch),
        ("idempotency", idempotency),
        ("retention", retention),
        ("ai_traffic", ai_traffic),
    ):
        step(name, fn)
    return result


def redispatch_lost_messages(kernel: Any, older_than_seconds: float = 30, limit: int = 500) -> int:
    """Re-send RQ messages for due PENDING jobs nobody picked up for a while (e.g. Redis restarted empty).

    A backlog is not a loss: while the queue holds at least as many messages as there are waiting jobs,
    nothing is re-sent (re-sending into a backlog would only grow it). Otherwise the oldest waiting jobs,
    as many as messages seem to be missing, are rung again. A duplicate message is harmless: only one
    claim of the row can succeed.
    """
    from ..adapters.rq import get_queue, ring
    from ..models import WorkflowJob

    now = kernel.clock.now()
    jobs = kernel.jobs.due_pending(now, now - timedelta(seconds=older_than_seconds), limit)
    if not jobs:
        return 0
    missing = len(jobs) - get_queue().count
    if missing <= 0:
        return 0
    ids = [j.id for j in jobs[:missing]]
    # Touch the rows so the next tick does not ring again before a worker had a chance.
    WorkflowJob.objects.filter(id__in=ids, status="PENDING").update(updated_at=now)
    return ring(ids)


class MaintenanceLoop:
    """Runs :func:`run_maintenance_tick` every ``interval`` seconds until stopped."""

    def __init__(self, *, interval: float | None = None, worker_id: str = "maintenance", kernel: Kernel | None = None):
        from ..conf import settings

        self.kernel = kernel
        self.interval = interval if interval is not None else settings.MAINTENANCE_INTERVAL_SECONDS
        self.worker_id = worker_id
        self.ticks = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self, *, once: bool = False) -> MaintenanceResult | None:
        from ..adapters.sqlite import use_wal

        use_wal()  # several processes share a SQLite file from now on
        last = None
        while not self._stop.is_set():
            try:
                close_old_connections()
                last = run_maintenance_tick(self.kernel, worker_id=self.worker_id)
                self.ticks += 1
                if any(
                    (
                        last.claimed,
                        last.resumed,
                        last.stale_released,
                        last.stuck_reaped,
                        last.requeued,
                        last.redispatched,
                        last.runs_purged,
                        last.schedules_fired,
                    )
                ):
                    logger.info("maintenance: %s", last)
            except Exception:
                logger.exception("maintenance tick failed")
                connections.close_all()
            if once:
                break
            self._stop.wait(self.interval)
        connections.close_all()
        return last

    def start_thread(self) -> None:
        self._thread = threading.Thread(target=self.run, name="workflow-maintenance", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
