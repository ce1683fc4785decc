"""Firing schedules: the maintenance step that starts one run per due fire time of each enabled
``WorkflowSchedule``.

Exactly once per (schedule, fire time), however many maintenance processes tick at once and wherever one
crashes: each run is created through ``run.create`` with the idempotency key ``schedule:<name>:<fire time>``
(a unique row in the database, not a lock in memory). A second process firing the same time gets the same
run back; a process that died after creating the run and before moving ``next_fire_at`` is followed by one
that finds the key and moves it. ``next_fire_at`` only moves forward: it is written with a guard on the value
read, so a slow process never moves it back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..core.errors import IdempotencyInProgressError, WorkflowEngineError
from ..core.schedule import DECLARED_FIELDS, InvalidSchedule, ScheduleSpec, due_fire_times
from ..kernel import CreateRun, Kernel

logger = logging.getLogger("django_workflow_engine.schedules")
_WARNED: set[str] = set()  # schedules whose code definition an operator overrode, warned about once per process


@dataclass
class FireResult:
    """What a pass did: runs started (or found already started for their fire time), schedules that failed."""

    fired: int = 0
    errors: int = 0


def fire_key(name: str, fire_time: datetime) -> str:
    """The idempotency key of a schedule's run for ``fire_time`` (UTC, ISO 8601)."""
    return f"schedule:{name}:{fire_time.isoformat()}"


def fire(kernel: Kernel, schedule: Any, fire_time: datetime | None, *, manual_at: datetime | None = None) -> Any:
    """Start the run of ``schedule`` for ``fire_time`` (idempotent per fire time), or, with ``manual_at``, a run
    now outside the timing ("Run now"). Returns the ``CreateRunResult``."""
    metadata: dict[str, Any] = {"schedule": schedule.name}
    if fire_time is not None:
        metadata["fire_time"] = fire_time.isoformat()
        key = fire_key(schedule.name, fire_time)
    else:
        assert manual_at is not None
        metadata["manual"] = manual_at.isoformat()
        key = f"schedule:{schedule.name}:manual:{manual_at.isoformat()}"
    return kernel.dispatch(
        CreateRun(
            workflow_id=schedule.workflow_id,
            input=schedule.input,
            config=schedule.config or None,
            priority=schedule.priority,
            idempotency_key=key,
            metadata=metadata,
            start=True,
        )
    )


def fire_due_schedules(kernel: Kernel, *, limit: int | None = None) -> FireResult:
    """Fire every enabled schedule whose ``next_fire_at`` has come (at most ``limit`` schedules, the most
    overdue first), per its catch-up policy. A schedule without ``next_fire_at`` gets its first one."""
    from ..conf import settings
    from ..models import WorkflowSchedule

    now = kernel.clock.now()
    limit = settings.MAX_SCHEDULES_PER_TICK if limit is None else limit
    result = FireResult()
    for schedule in WorkflowSchedule.objects.filter(enabled=True, next_fire_at__isnull=True)[:limit]:
        first = schedule.timing.next_after(now)
        WorkflowSchedule.objects.filter(pk=schedule.pk, next_fire_at__isnull=True).update(next_fire_at=first)
    due = WorkflowSchedule.objects.filter(enabled=True, next_fire_at__lte=now).order_by("next_fire_at")[:limit]
    for schedule in due:
        try:
            result.fired += _fire_schedule(kernel, schedule, now)
        except Exception:
            logger.exception("schedule %r could not fire", schedule.name)
            result.errors += 1
    return result


def _fire_schedule(kernel: Kernel, schedule: Any, now: datetime) -> int:
    from ..models import WorkflowSchedule

    plan = due_fire_times(schedule.timing, schedule.next_fire_at, now, schedule.catchup, schedule.catchup_limit)
    if plan.missed:
        logger.warning(
            "schedule %r: fire times before %s were missed (catch-up policy %r)",
            schedule.name,
            plan.fire[0].isoformat() if plan.fire else now.isoformat(),
            schedule.catchup,
        )
    fired = 0
    last_run_id = None
    last_fire = None
    for fire_time in plan.fire:
        try:
            created = fire(kernel, schedule, fire_time)
        except IdempotencyInProgressError:
            return fired  # another maintenance process is firing this time right now; it moves next_fire_at
        except WorkflowEngineError as exc:
            # The workflow rejects the input or is gone: this fire time is lost, the schedule goes on.
            logger.error("schedule %r: the run for %s was not started: %s", schedule.name, fire_time.isoformat(), exc)
            continue
        fired += 1
        last_run_id, last_fire = created.run_id, fire_time
    fields: dict[str, Any] = {"next_fire_at": plan.next_fire_at}
    if last_fire is not None:
        fields.update(last_fire_at=last_fire, last_run_id=last_run_id)
    # Guarded on the value read: a process that read an older next_fire_at never moves it back.
    WorkflowSchedule.objects.filter(pk=schedule.pk, next_fire_at=schedule.next_fire_at).update(**fields)
    return fired


def declared_schedules(kernel: Kernel) -> list[ScheduleSpec]:
    """The schedules declared in code: on the registered workflows, then ``WORKFLOW_ENGINE["SCHEDULES"]``."""
    from ..conf import settings

    registry = kernel.deps.registry
    specs: list[ScheduleSpec] = []
    for workflow_id in registry.ids():
        workflow = registry.get(workflow_id)
        specs.extend(getattr(workflow, "schedules", ()))
    specs.extend(ScheduleSpec.from_setting(item, i) for i, item in enumerate(settings.SCHEDULES or ()))
    return specs


def sync_declared_schedules(kernel: Kernel) -> SyncResult:
    """Bring the ``WorkflowSchedule`` rows in line with the schedules declared in code, idempotently.

    The conflict rule: a row remembers (``declared``) the code definition it was last synced from.
    * No row of that name: one is created from the code.
    * The row still holds what it was synced from (nobody changed it): it takes the code's new definition.
    * An operator changed it in the admin (it differs from ``declared``), or made it there (``declared`` is
      NULL): the operator wins, the row is left alone, and a warning names the schedule. To hand a schedule
      back to code, delete the row: the next tick creates it again from the code.
    A schedule removed from the code keeps its row (disable or delete it in the admin).
    """
    from ..models import WorkflowSchedule

    specs = declared_schedules(kernel)
    result = SyncResult()
    if not specs:
        return result
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise InvalidSchedule("name", f"schedules declared twice in code: {', '.join(twice)}.")
    rows = {row.name: row for row in WorkflowSchedule.objects.filter(name__in=names)}
    registry = kernel.deps.registry
    for spec in specs:
        wanted = spec.fields()
        workflow = registry.get(spec.workflow_id)
        if workflow is not None:
            # As the admin stores it (defaults filled in): saving the row unchanged is not an operator's change.
            try:
                wanted["input"] = workflow.parse_input(wanted["input"])
            except WorkflowEngineError as exc:
                logger.error("schedule %r declared in code is not synced: %s", spec.name, exc)  # and check E053
                continue
        row = rows.get(spec.name)
        if row is None:
            _, made = WorkflowSchedule.objects.get_or_create(name=spec.name, defaults={**wanted, "declared": wanted})
            result.created += made
            continue
        if row.declared == wanted:
            continue  # in sync (or changed by an operator from this very definition: theirs stays)
        current = {name: getattr(row, name) for name in DECLARED_FIELDS}
        if row.declared is None or current != row.declared:
            result.kept.append(spec.name)
            if spec.name in _WARNED:
                continue
            _WARNED.add(spec.name)
            logger.warning(
                "schedule %r: changed in the admin, so the definition in code is not applied "
                "(delete the row to take the code's definition again)",
                spec.name,
            )
            continue
        timing_changed = any(current[f] != wanted[f] for f in ("cron", "interval_seconds", "timezone"))
        update = {**wanted, "declared": wanted}
        if timing_changed or (row.enabled is False and spec.enabled):
            update["next_fire_at"] = None  # recomputed from now by the next firing pass
        update["updated_at"] = kernel.clock.now()
        # Guarded on what was read: an operator's save in between wins.
        result.updated += WorkflowSchedule.objects.filter(pk=row.pk, updated_at=row.updated_at).update(**update)
    return result


@dataclass
class SyncResult:
    created: int = 0
    updated: int = 0
    kept: list[str] = field(default_factory=list)
