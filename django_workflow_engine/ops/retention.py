"""Retention: delete finished runs older than a cutoff, in short index-ordered batches.

A batch is one short transaction: select up to ``batch_size`` run ids of one status in ``(status, updated_at)``
index order after the previous batch's last key (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so a run another
process is touching is left for later), then delete them with :func:`adapters.deletion.delete_runs`, which
removes everything that belongs to a run: stages (all generations), jobs, logs, artifacts, annotations,
outbox events, idempotency keys, and its blob folder once the batch commits. AI calls stay, with their
``workflow_id`` and ``stage_key``: the cost history is not changed by a purge.

A run's age is the time since it was last updated, which for a finished run is when it finished (a rerun
makes it young again).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..errors import WorkflowEngineError

FINISHED = ("COMPLETED", "FAILED", "CANCELLED")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAX_AGE = timedelta(days=36_500)
MAX_BATCH_SIZE = 10_000
# A batch of 100 runs deletes ~400 stages: key lists this short are planned as index lookups on every table
# (at 500 runs PostgreSQL chose a sequential scan of a 300,000-row log table for the 2,000 stage ids).
DEFAULT_BATCH_SIZE = 100


class InvalidRetention(WorkflowEngineError):
    """A purge was asked for with a bad age, status, or batch size."""


def parse_age(value: Any, *, field_name: str = "older_than") -> timedelta:
    """``"30d"`` / ``"12h"`` / ``"90m"`` / ``"2w"`` / ``"45s"``, a number of seconds, or a ``timedelta``.

    Raises:
        InvalidRetention: not a positive age of at most 100 years.
    """
    age: timedelta | None = None
    if isinstance(value, timedelta):
        age = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        age = timedelta(seconds=value) if value < MAX_AGE.total_seconds() + 1 else MAX_AGE * 2
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*(\d{1,9})\s*([smhdw])\s*", value)
        if match:
            age = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if age is None or age <= timedelta(0):
        raise InvalidRetention(
            f"{field_name} is {value!r}: use a positive age with a unit, e.g. '30d', '12h', '2w' (or seconds)"
        )
    if age > MAX_AGE:
        raise InvalidRetention(f"{field_name} is {value!r}: the longest age is 36500d (100 years)")
    return age


def parse_statuses(values: Iterable[str] | None, *, field_name: str = "status") -> tuple[str, ...]:
    """Finished statuses to purge (default all three); ``"COMPLETED,FAILED"`` and lists both work.

    Raises:
        InvalidRetention: a status that is not COMPLETED, FAILED or CANCELLED.
    """
    if values is None:
        return FINISHED
    if isinstance(values, str):
        values = [values]
    chosen: list[str] = []
    for value in values:
        for part in str(value).split(","):
            status = part.strip().upper()
            if status not in FINISHED:
                raise InvalidRetention(
                    f"{field_name}: {part.strip()!r} cannot be purged: use COMPLETED, FAILED or CANCELLED "
                    "(unfinished runs are never purged)"
                )
            if status not in chosen:
                chosen.append(status)
    if not chosen:
        raise InvalidRetention(f"{field_name} is empty: name at least one of COMPLETED, FAILED, CANCELLED")
    return tuple(chosen)


def parse_batch_size(value: Any, *, field_name: str = "batch_size") -> int:
    """Raises InvalidRetention unless ``value`` is an integer from 1 to 10,000."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BATCH_SIZE:
        raise InvalidRetention(f"{field_name} is {value!r}: use a whole number from 1 to {MAX_BATCH_SIZE}")
    return value


@dataclass
class PurgeResult:
    """What a purge did (or, with ``dry_run``, would do)."""

    runs: int = 0
    batches: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    """Deleted rows by model name (``WorkflowRun``, ``WorkflowStage``, ``WorkflowLog``...)."""
    matched: dict[tuple[str, str], int] = field(default_factory=dict)
    """Dry run: matching runs by (workflow_id, status)."""
    seconds: float = 0.0
    dry_run: bool = False

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


@dataclass(frozen=True)
class RetentionPolicy:
    """A validated purge request (``RETENTION`` setting or ``purgeruns`` arguments)."""

    older_than: timedelta
    statuses: tuple[str, ...] = FINISHED
    workflows: tuple[str, ...] = ()
    batch_size: int = DEFAULT_BATCH_SIZE

    @classmethod
    def build(
        cls,
        older_than: Any,
        statuses: Iterable[str] | None = None,
        workflows: Sequence[str] | None = None,
        batch_size: Any = DEFAULT_BATCH_SIZE,
        *,
        label: Any = str,
    ) -> RetentionPolicy:
        """Validate each argument (raises :class:`InvalidRetention` naming the bad one as ``label(name)``)."""
        names = tuple(part.strip() for w in (workflows or ()) for part in w.split(",") if part.strip())
        return cls(
            parse_age(older_than, field_name=label("older_than")),
            parse_statuses(statuses, field_name=label("statuses")),
            names,
            parse_batch_size(batch_size, field_name=label("batch_size")),
        )


def _candidates(status: str, cutoff: datetime, workflows: Sequence[str], after: tuple[datetime, str] | None):
    from django.db.models import Q

    from ..models import WorkflowRun

    # status = %s AND updated_at < %s ORDER BY updated_at, id: a range of dwe_run_activity_idx (status, updated_at).
    qs = WorkflowRun.objects.filter(status=status, updated_at__lt=cutoff)
    if workflows:
        qs = qs.filter(workflow_id__in=workflows)
    if after is not None:
        # The >= bound is what the index range starts from; the OR breaks ties on equal timestamps.
        qs = qs.filter(Q(updated_at__gte=after[0]), Q(updated_at__gt=after[0]) | Q(id__gt=after[1]))
    return qs.order_by("updated_at", "id")


def purge_runs(
    policy: RetentionPolicy,
    *,
    dry_run: bool = False,
    max_runs: int | None = None,
    now: datetime | None = None,
    using: str = "default",
    progress: Any = None,
) -> PurgeResult:
    """Delete the finished runs ``policy`` selects, ``policy.batch_size`` per transaction.

    Args:
        policy: what to delete.
        dry_run: count the matching runs by workflow and status; delete nothing.
        max_runs: stop after about this many runs (the maintenance step bounds its work per tick).
        now: the reference time (default ``timezone.now()``).
        progress: called with the running :class:`PurgeResult` after each batch.
    """
    from django.db import connections, transaction
    from django.db.models import Count
    from django.utils import timezone

    from ..adapters.deletion import delete_runs
    from ..models import WorkflowRun

    started = time.perf_counter()
    cutoff = (now or timezone.now()) - policy.older_than
    result = PurgeResult(dry_run=dry_run)
    if dry_run:
        for status in policy.statuses:
            counts = (
                _candidates(status, cutoff, policy.workflows, None)
                .using(using)
                .order_by()
                .values("workflow_id")
                .annotate(n=Count("id"))
            )
            for row in counts:
                result.matched[(row["workflow_id"], status)] = row["n"]
                result.runs += row["n"]
        result.seconds = time.perf_counter() - started
        return result

    locking = connections[using].features.has_select_for_update_skip_locked
    for status in policy.statuses:
        after: tuple[datetime, str] | None = None
        while max_runs is None or result.runs < max_runs:
            limit = policy.batch_size if max_runs is None else min(policy.batch_size, max_runs - result.runs)
            with transaction.atomic(using=using):
                qs = _candidates(status, cutoff, policy.workflows, after).using(using)
                if locking:
                    qs = qs.select_for_update(skip_locked=True)
                keys = list(qs.values_list("updated_at", "id")[:limit])
                if not keys:
                    break
                counts = delete_runs([pk for _, pk in keys], using=using)
            after = keys[-1]
            result.batches += 1
            result.runs += counts.get(WorkflowRun._meta.label, 0)
            for label, n in counts.items():
                name = label.rsplit(".", 1)[-1]
                result.rows[name] = result.rows.get(name, 0) + n
            if progress is not None:
                progress(result)
            if len(keys) < limit:
                break
    result.seconds = time.perf_counter() - started
    return result


def configured_policy() -> tuple[RetentionPolicy, int] | None:
    """The ``RETENTION`` setting as a policy and its per-tick limit, or ``None`` when not set.

    Raises:
        InvalidRetention: the setting is malformed (the system check reports the same message).
    """
    from ..conf import settings

    raw = settings.RETENTION
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidRetention(f"RETENTION is {raw!r}: use None or a dict like {{'older_than': '30d'}}")
    unknown = sorted(set(raw) - {"older_than", "statuses", "workflows", "batch_size", "max_runs_per_tick"})
    if unknown:
        raise InvalidRetention(
            f"RETENTION has unknown key(s) {', '.join(map(repr, unknown))}: valid keys are older_than, statuses, "
            "workflows, batch_size, max_runs_per_tick"
        )
    if "older_than" not in raw:
        raise InvalidRetention("RETENTION needs 'older_than', e.g. {'older_than': '30d'}")
    workflows = raw.get("workflows")
    if workflows is not None and (
        isinstance(workflows, str)
        or not isinstance(workflows, list | tuple)
        or not all(isinstance(w, str) for w in workflows)
    ):
        raise InvalidRetention(f"RETENTION['workflows'] is {workflows!r}: use a list of workflow ids, or leave it out")
    statuses = raw.get("statuses")
    if statuses is not None and (isinstance(statuses, str) or not isinstance(statuses, list | tuple)):
        raise InvalidRetention(f"RETENTION['statuses'] is {statuses!r}: use a list such as ['COMPLETED', 'FAILED']")
    policy = RetentionPolicy.build(
        raw["older_than"],
        statuses,
        workflows,
        raw.get("batch_size", DEFAULT_BATCH_SIZE),
        label=lambda key: f"RETENTION[{key!r}]",
    )
    per_tick = raw.get("max_runs_per_tick", 2000)
    parse_batch_size(per_tick, field_name="RETENTION['max_runs_per_tick']")
    return policy, per_tick


def apply_retention(*, now: datetime | None = None) -> int:
    """The maintenance step: purge per the ``RETENTION`` setting, at most ``max_runs_per_tick`` runs.

    Returns the number of runs deleted (0 without the setting, and then no query is made).
    """
    configured = configured_policy()
    if configured is None:
        return 0
    policy, per_tick = configured
    return purge_runs(policy, max_runs=per_tick, now=now).runs
