"""Settings: ``settings.WORKFLOW_ENGINE`` read key by key, with documented defaults.

Values are read on every access, so ``override_settings(WORKFLOW_ENGINE=...)`` works in tests.
"""

from __future__ import annotations

import warnings
from typing import Any

from django.conf import settings as django_settings

DEFAULTS: dict[str, Any] = {
    "WORKFLOWS": [],
    "TRANSPORT": "database",
    "RQ_QUEUE": "workflows",
    "BLOB_STORAGE": "default",
    "BLOB_PREFIX": "workflow-engine",
    "INLINE_OUTPUT_BYTES": 64 * 1024,
    "LEASE_SECONDS": 300,
    "HEARTBEAT_SECONDS": 60,
    "STUCK_RUN_SECONDS": 900,
    "MAX_ATTEMPTS": 3,
    "RETRY_BASE_SECONDS": 2,
    # The longest wait between two attempts, and the share of it taken off at random (0 to 1).
    "RETRY_MAX_INTERVAL_SECONDS": 300,
    "RETRY_JITTER": 0.0,
    # The time one stage execution may take, for stages defined without timeout= (None: no limit).
    "STAGE_TIMEOUT_SECONDS": None,
    "IDEMPOTENCY_STALE_SECONDS": 600,
    # Idempotency keys older than this are deleted by the maintenance tick (None: kept until their run is deleted).
    "IDEMPOTENCY_KEY_TTL_SECONDS": 7 * 24 * 3600,
    "MAX_INPUT_BYTES": 1024 * 1024,
    # A map stage over more items than this fails its run, before any item is written (docs/fan-out.md).
    "MAX_MAP_ITEMS": 10_000,
    # Finished runs the maintenance loop purges, e.g. {"older_than": "30d"} (None: kept until deleted).
    "RETENTION": None,
    # OpenTelemetry spans per run, stage execution and AI call (the 'otel' extra); False: nothing is imported.
    "TRACING": False,
    "WORKER_POLL_SECONDS": 1.0,
    "MAINTENANCE_INTERVAL_SECONDS": 5.0,
    "REDELIVER_SECONDS": 30,
    # A worker continues its runs itself (their next stages, unclaimed siblings, due jobs) without the queue.
    "CONTINUE_IN_WORKER": True,
    # Due jobs a worker takes at once while its stages are short: their begins share one transaction, and so do
    # their outcomes (None: 8 on PostgreSQL, 1 elsewhere; 1: one job at a time).
    "WORKER_BATCH": None,
    # PostgreSQL: the engine's hot statements are prepared on their second execution on a connection.
    "PREPARED_STATEMENTS": True,
    # Schedules declared in code: [{"name": ..., "workflow": ..., "cron": ... | "interval_seconds": ..., ...}]
    # (see docs/schedules.md); synced to WorkflowSchedule rows by the maintenance tick.
    "SCHEDULES": [],
    # Schedules fired per maintenance tick (the most overdue first).
    "MAX_SCHEDULES_PER_TICK": 100,
    "EVENT_PLUGINS": [],
    "AI_MODELS": {},
    "AI_LOG_PROMPTS": True,
    # AI spend budget for runs started without max_cost: a number for every run, or {workflow_id: number}.
    "AI_DEFAULT_MAX_COST": None,
    # Requests and tokens per minute per model or glob pattern, shared by every worker (docs/flow-control.md):
    # {"gpt-4o-mini": {"rpm": 500, "tpm": 200_000}, "anthropic/*": {"rpm": 50}}.
    "AI_RATE_LIMITS": {},
    # Where the limits are counted: "auto" (Redis when TRANSPORT is "rq", else the database), "redis", "database".
    "AI_RATE_LIMITER": "auto",
    # A call over a limit waits up to this long; beyond it the stage is deferred (rescheduled, same attempt).
    "AI_RATE_LIMIT_WAIT_SECONDS": 5.0,
    # The rate limits' window ("per minute"); shorter only to test limits quickly.
    "AI_RATE_LIMIT_WINDOW_SECONDS": 60.0,
    # How long a provider 429 without a Retry-After header holds a model back.
    "AI_RATE_LIMIT_RETRY_AFTER_SECONDS": 20.0,
    # Response cache: False (off unless a call passes cache=...), True (every call, 1 hour) or a TTL in seconds.
    "AI_CACHE": False,
}

# Old name -> new name. The old name still works (a user setting under it is read for the new one) and warns.
RENAMED = {"EAGER_EXECUTION": "CONTINUE_IN_WORKER"}


class EngineSettings:
    """Attribute access to ``settings.WORKFLOW_ENGINE`` with defaults: ``conf.settings.LEASE_SECONDS``."""

    def __getattr__(self, name: str) -> Any:
        if name in RENAMED:
            _deprecated(name)
            name = RENAMED[name]
        if name not in DEFAULTS:
            raise AttributeError(f"Unknown WORKFLOW_ENGINE setting {name!r}")
        user = getattr(django_settings, "WORKFLOW_ENGINE", None) or {}
        if name in user:
            return user[name]
        for old, new in RENAMED.items():
            if new == name and old in user:
                _deprecated(old)
                return user[old]
        return DEFAULTS[name]

    def user_settings(self) -> dict[str, Any]:
        return dict(getattr(django_settings, "WORKFLOW_ENGINE", None) or {})


def _deprecated(old: str) -> None:
    warnings.warn(
        f"WORKFLOW_ENGINE[{old!r}] is deprecated: use WORKFLOW_ENGINE[{RENAMED[old]!r}] (same meaning).",
        DeprecationWarning,
        stacklevel=3,
    )


settings = EngineSettings()
