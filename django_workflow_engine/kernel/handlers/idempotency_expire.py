"""``idempotency.expire``: delete idempotency keys older than their time to live, one bounded batch.

A key older than the TTL no longer deduplicates: the same key then starts a new run. The maintenance tick
dispatches this with ``WORKFLOW_ENGINE['IDEMPOTENCY_KEY_TTL_SECONDS']``.
"""

from __future__ import annotations

from datetime import timedelta

from ..commands import ExpireIdempotencyKeys, ExpireResult
from ..kernel import Deps

RESULT = ExpireResult


def handle(command: ExpireIdempotencyKeys, deps: Deps, causation_id: str) -> ExpireResult:
    cutoff = deps.clock.now() - timedelta(seconds=command.older_than_seconds)
    return ExpireResult(expired=deps.persistence.expire_idempotency_keys(cutoff, command.max_keys))
