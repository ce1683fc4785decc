"""Settings: ``settings.WORKFLOW_ENGINE`` read key by key, with documented defaults.

Values are read on every access, so ``override_settings(WORKFLOW_ENGINE=...)`` works in tests.
"""

from __future__ import annotations

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
    "IDEMPOTENCY_STALE_SECONDS": 600,
    # Idempotency keys older than this are deleted by the maintenance tick (None: kept until their run is deleted).
    "IDEMPOTENCY_KEY_TTL_SECONDS": 7 * 24 * 3600,
    "MAX_INPUT_BYTES": 1024 * 1024,
    # Finished runs the maintenance loop purges, e.g. {"older_than": "30d"} (None: kept until deleted).
    "RETENTION": None,
    # OpenTelemetry spans per run, stage execution and AI call (the 'otel' extra); False: nothing is imported.
    "TRACING": False,
    "WORKER_POLL_SECONDS": 1.0,
    "MAINTENANCE_INTERVAL_SECONDS": 5.0,
    "REDELIVER_SECONDS": 30,
    # A worker whose stage starts the next group executes that group's first stage itself, at once.
    "EAGER_EXECUTION": True,
    # PostgreSQL: the engine's hot statements are prepared on their second execution on a connection.
    "PREPARED_STATEMENTS": True,
    "EVENT_PLUGINS": [],
    "AI_MODELS": {},
    "AI_LOG_PROMPTS": True,
    # AI spend budget for runs started without max_cost: a number for every run, or {workflow_id: number}.
    "AI_DEFAULT_MAX_COST": None,
}


class EngineSettings:
    """Attribute access to ``settings.WORKFLOW_ENGINE`` with defaults: ``conf.settings.LEASE_SECONDS``."""

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"Unknown WORKFLOW_ENGINE setting {name!r}")
        user = getattr(django_settings, "WORKFLOW_ENGINE", None) or {}
        return user.get(name, DEFAULTS[name])

    def user_settings(self) -> dict[str, Any]:
        return dict(getattr(django_settings, "WORKFLOW_ENGINE", None) or {})


settings = EngineSettings()
