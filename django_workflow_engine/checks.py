"""System checks for ``settings.WORKFLOW_ENGINE``."""

from __future__ import annotations

import json
from typing import Any

from django.core import checks

from .conf import DEFAULTS, RENAMED, settings

_POSITIVE_NUMBERS = (
    "LEASE_SECONDS",
    "HEARTBEAT_SECONDS",
    "STUCK_RUN_SECONDS",
    "MAX_ATTEMPTS",
    "MAX_INPUT_BYTES",
    "WORKER_POLL_SECONDS",
    "MAINTENANCE_INTERVAL_SECONDS",
    "IDEMPOTENCY_STALE_SECONDS",
    "REDELIVER_SECONDS",
)


# What a SQLite site shared with workers should set (docs/operating.md, the example project, check W001).
SQLITE_OPTIONS = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
SQLITE_OPTIONS_SNIPPET = f'DATABASES["default"]["OPTIONS"] = {json.dumps(SQLITE_OPTIONS)}'


def _error(msg: str, hint: str, n: int) -> checks.Error:
    return checks.Error(msg, hint=hint, id=f"django_workflow_engine.E{n:03d}")


@checks.register()
def check_sqlite(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W001: the default database is SQLite without ``transaction_mode="IMMEDIATE"`` or a busy ``timeout``.

    The engine needs neither for itself: its own transactions take the write lock up front and wait out a busy
    database, and workers switch the file to WAL (``adapters/sqlite.py``). The site's own transactions are the
    site's: a view that reads, then writes, while a worker writes fails at once with "database is locked"."""
    from django.db import connections

    if connections["default"].vendor != "sqlite":
        return []
    options = connections["default"].settings_dict.get("OPTIONS") or {}
    missing = []
    if str(options.get("transaction_mode") or "").upper() != "IMMEDIATE":
        missing.append('transaction_mode="IMMEDIATE"')
    if "timeout" not in options:
        missing.append("a busy timeout")
    if not missing:
        return []
    return [
        checks.Warning(
            f"The default database is SQLite without {' or '.join(missing)}: with workers running, the site's own "
            "transactions that read, then write, can fail with 'database is locked'.",
            hint=f"Paste after DATABASES in your settings: {SQLITE_OPTIONS_SNIPPET} (WAL lets readers and the "
            "writer work at once; SQLite suits one machine and a few processes: beyond that, use PostgreSQL).",
            id="django_workflow_engine.W001",
        )
    ]


@checks.register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    user = settings.user_settings()
    unknown = sorted(set(user) - set(DEFAULTS) - set(RENAMED))
    if unknown:
        errors.append(
            _error(
                f"Unknown WORKFLOW_ENGINE setting(s): {', '.join(unknown)}.",
                f"Valid keys are: {', '.join(sorted(DEFAULTS))}.",
                1,
            )
        )
    if settings.TRANSPORT not in ("database", "rq"):
        errors.append(_error(f"WORKFLOW_ENGINE['TRANSPORT'] is {settings.TRANSPORT!r}.", "Use 'database' or 'rq'.", 2))
    for key in _POSITIVE_NUMBERS:
        value = getattr(settings, key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            errors.append(_error(f"WORKFLOW_ENGINE[{key!r}] is {value!r}.", f"Set {key} to a positive number.", 3))
    ttl, stale = settings.IDEMPOTENCY_KEY_TTL_SECONDS, settings.IDEMPOTENCY_STALE_SECONDS
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0):
        errors.append(
            _error(
                f"WORKFLOW_ENGINE['IDEMPOTENCY_KEY_TTL_SECONDS'] is {ttl!r}.",
                "Use a positive number of seconds (default 604800, one week), or None to keep keys until their "
                "run is deleted.",
                11,
            )
        )
    elif isinstance(ttl, int | float) and isinstance(stale, int | float) and ttl < stale:
        errors.append(
            _error(
                f"WORKFLOW_ENGINE['IDEMPOTENCY_KEY_TTL_SECONDS'] ({ttl}) is shorter than IDEMPOTENCY_STALE_SECONDS "
                f"({stale}).",
                "A key must outlive the in-progress window, or a slow call's key could expire while it runs: "
                "raise IDEMPOTENCY_KEY_TTL_SECONDS.",
                11,
            )
        )
    base = settings.RETRY_BASE_SECONDS
    if isinstance(base, bool) or not isinstance(base, int | float) or base < 0:
        errors.append(_error(f"WORKFLOW_ENGINE['RETRY_BASE_SECONDS'] is {base!r}.", "Use a number >= 0.", 3))
    for key in ("RETRY_MAX_INTERVAL_SECONDS", "STAGE_TIMEOUT_SECONDS"):
        value = getattr(settings, key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 or value == float("inf")
        ):
            errors.append(
                _error(f"WORKFLOW_ENGINE[{key!r}] is {value!r}.", f"Set {key} to a positive number or None.", 35)
            )
    limit = settings.MAX_MAP_ITEMS
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10**9:
        errors.append(
            _error(
                f"WORKFLOW_ENGINE['MAX_MAP_ITEMS'] is {limit!r}.",
                "Use a whole number from 1 to 1,000,000,000 (default 10,000): the most items one map stage fans "
                "out to.",
                54,
            )
        )
    jitter = settings.RETRY_JITTER
    if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter <= 1:
        errors.append(_error(f"WORKFLOW_ENGINE['RETRY_JITTER'] is {jitter!r}.", "Use a fraction from 0 to 1.", 35))
    lease, beat = settings.LEASE_SECONDS, settings.HEARTBEAT_SECONDS
    if isinstance(lease, int | float) and isinstance(beat, int | float) and beat >= lease:
        errors.append(
            _error(
                f"WORKFLOW_ENGINE['HEARTBEAT_SECONDS'] ({beat}) is not shorter than LEASE_SECONDS ({lease}).",
                "Heartbeats must come well within the lease, e.g. HEARTBEAT_SECONDS = LEASE_SECONDS / 5.",
                4,
            )
        )
    batch = settings.WORKER_BATCH
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        errors.append(
            _error(
                f"WORKFLOW_ENGINE['WORKER_BATCH'] is {batch!r}.",
                "Use a whole number of jobs, at least 1 (1: one job at a time), or None (8 on PostgreSQL, else 1).",
                3,
            )
        )
    for flag in ("CONTINUE_IN_WORKER", "PREPARED_STATEMENTS"):
        if not isinstance(getattr(settings, flag), bool):
            errors.append(_error(f"WORKFLOW_ENGINE[{flag!r}] is {getattr(settings, flag)!r}.", "Use True or False.", 3))
    if settings.AI_LOG_PROMPTS not in (True, False, "redact"):
        errors.append(
            _error(
                f"WORKFLOW_ENGINE['AI_LOG_PROMPTS'] is {settings.AI_LOG_PROMPTS!r}.", "Use True, False or 'redact'.", 5
            )
        )
    if not isinstance(settings.WORKFLOWS, list | tuple) or not all(isinstance(p, str) for p in settings.WORKFLOWS):
        errors.append(
            _error("WORKFLOW_ENGINE['WORKFLOWS'] must be a list of dotted paths.", "e.g. ['myapp.flows.pipeline'].", 6)
        )
    if not isinstance(settings.AI_MODELS, dict):
        errors.append(
            _error("WORKFLOW_ENGINE['AI_MODELS'] must be a dict of model name to prices.", "See the AI docs.", 7)
        )
    if not _valid_budget_setting(settings.AI_DEFAULT_MAX_COST):
        errors.append(
            _error(
                f"WORKFLOW_ENGINE['AI_DEFAULT_MAX_COST'] is {settings.AI_DEFAULT_MAX_COST!r}.",
                "Use None, a number >= 0, or a dict of workflow id to number, e.g. {'doc-pipeline': 0.5}.",
                10,
            )
        )
    if settings.RETENTION is not None:
        from .ops.retention import InvalidRetention, configured_policy

        try:
            configured_policy()
        except InvalidRetention as exc:
            errors.append(
                _error(
                    str(exc),
                    "e.g. RETENTION = {'older_than': '30d', 'statuses': ['COMPLETED', 'CANCELLED'], "
                    "'batch_size': 100, 'max_runs_per_tick': 2000}.",
                    20,
                )
            )
    if not isinstance(settings.TRACING, bool):
        errors.append(_error(f"WORKFLOW_ENGINE['TRACING'] is {settings.TRACING!r}.", "Use True or False.", 21))
    elif settings.TRACING:
        import importlib.util

        if importlib.util.find_spec("opentelemetry") is None:
            errors.append(
                _error(
                    "WORKFLOW_ENGINE['TRACING'] is True but OpenTelemetry is not installed.",
                    "pip install 'django-workflow-engine[otel]' (and configure an exporter), or set TRACING = False.",
                    21,
                )
            )
    if settings.TRANSPORT == "rq":
        from django.conf import settings as dj

        queues = getattr(dj, "RQ_QUEUES", {}) or {}
        if settings.RQ_QUEUE not in queues:
            errors.append(
                _error(
                    f"WORKFLOW_ENGINE['RQ_QUEUE'] is {settings.RQ_QUEUE!r} but RQ_QUEUES has no such queue.",
                    f"Add RQ_QUEUES = {{{settings.RQ_QUEUE!r}: {{'URL': 'redis://localhost:6379/0'}}}}.",
                    8,
                )
            )
    return errors


def _valid_budget_setting(value: Any) -> bool:
    def amount(v: Any) -> bool:
        return not isinstance(v, bool) and isinstance(v, int | float | str) and _non_negative(v)

    if value is None:
        return True
    if isinstance(value, dict):
        return all(isinstance(k, str) and amount(v) for k, v in value.items())
    return amount(value)


def _non_negative(value: Any) -> bool:
    from decimal import Decimal, InvalidOperation

    try:
        return Decimal(str(value)) >= 0
    except InvalidOperation:
        return False


@checks.register()
def check_workflows(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from django.core.exceptions import ImproperlyConfigured

    from .registry import registry

    try:
        registry.ids()
    except ImproperlyConfigured as exc:
        return [_error(str(exc), "Fix WORKFLOW_ENGINE['WORKFLOWS'] or the workflows.py modules.", 9)]
    return []


@checks.register()
def check_schedules(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``WORKFLOW_ENGINE["SCHEDULES"]``: each entry a valid schedule of a registered workflow, names unique
    (E050 a bad entry, E051 an unknown workflow, E052 a name declared twice, E053 an input the workflow rejects)."""
    from django.core.exceptions import ImproperlyConfigured

    from .conf import settings
    from .core.errors import WorkflowEngineError
    from .core.schedule import InvalidSchedule, ScheduleSpec
    from .registry import registry

    items = settings.SCHEDULES or []
    if not isinstance(items, (list, tuple)):
        return [_error("WORKFLOW_ENGINE['SCHEDULES'] must be a list of dicts.", "See docs/schedules.md.", 50)]
    errors: list[checks.CheckMessage] = []
    per_tick = settings.MAX_SCHEDULES_PER_TICK
    if isinstance(per_tick, bool) or not isinstance(per_tick, int) or per_tick < 1:
        errors.append(_error("WORKFLOW_ENGINE['MAX_SCHEDULES_PER_TICK'] must be a positive integer.", "e.g. 100", 50))
    specs = []
    for index, item in enumerate(items):
        try:
            specs.append(ScheduleSpec.from_setting(item, index))
        except InvalidSchedule as exc:
            errors.append(_error(str(exc), "See docs/schedules.md for the keys of a schedule.", 50))
    try:
        workflows = [w for w in (registry.get(i) for i in registry.ids()) if w is not None]
    except ImproperlyConfigured:
        return errors  # reported by check_workflows
    for spec in specs:
        workflow = registry.get(spec.workflow_id)
        if workflow is None:
            errors.append(
                _error(
                    f"WORKFLOW_ENGINE['SCHEDULES']: schedule {spec.name!r} names the unknown workflow "
                    f"{spec.workflow_id!r}.",
                    f"Registered workflows: {', '.join(registry.ids()) or '(none)'}.",
                    51,
                )
            )
            continue
        try:
            workflow.parse_input(spec.input if spec.input is not None else {})
            workflow.resolve_config(spec.config)
        except WorkflowEngineError as exc:
            errors.append(_error(f"WORKFLOW_ENGINE['SCHEDULES']: schedule {spec.name!r}: {exc}", "Fix its input.", 53))
    names = [s.name for s in specs] + [s.name for w in workflows for s in getattr(w, "schedules", ())]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        errors.append(
            _error(f"Schedules declared twice in code: {', '.join(twice)}.", "Give every schedule its own name.", 52)
        )
    return errors
