"""Schedule arithmetic, without Django: which fire times a cron expression or an interval has, and which of
the fire times missed since the last tick a catch-up policy fires.

Cron expressions are parsed and evaluated by `cronsim <https://pypi.org/project/cronsim/>`_ (five fields,
the cron(8) dialect) in the schedule's timezone. Daylight saving time follows cronsim's rule, the one of
cronie: at a spring-forward gap a fire time that falls in the missing hour fires once, at the first instant
after the gap (02:30 -> 03:00); at a fall-back overlap an expression with a fixed hour fires once (at the
first 02:30), one with a wildcard hour ("*/30 * * * *") fires in both passes, as the wall clock shows them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .errors import InvalidArgument

SCHEDULE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
CATCHUP_POLICIES = ("skip", "latest", "all")
MAX_CATCHUP_LIMIT = 1000
MAX_INTERVAL_SECONDS = 366 * 24 * 3600
# A fire time found within this many seconds after it was due is on time, not missed (policy "skip").
ON_TIME_SECONDS = 60.0
# An interval schedule counts its fire times from this instant (whole seconds of UTC), so every process agrees.
INTERVAL_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class InvalidSchedule(InvalidArgument):
    """A schedule's cron expression, interval, timezone or catch-up policy is not usable; ``field`` names it."""


@dataclass(frozen=True)
class Timing:
    """When a schedule fires: ``cron`` (in ``timezone``) or every ``interval_seconds``."""

    cron: str = ""
    interval_seconds: int | None = None
    timezone: str = "UTC"

    def check(self) -> None:
        """Raise ``InvalidSchedule`` naming the field when the timing is unusable."""
        if bool(self.cron) == (self.interval_seconds is not None):
            raise InvalidSchedule("cron", "give a cron expression or an interval in seconds (one of them).")
        zone(self.timezone)
        if self.cron:
            if not isinstance(self.cron, str):
                raise InvalidSchedule("cron", f"must be a string, not {type(self.cron).__name__}.")
            try:
                CronSim(self.cron, datetime(2000, 1, 1, tzinfo=UTC))
            except CronSimError as exc:
                raise InvalidSchedule("cron", f"{self.cron!r} is not a cron expression: {exc}") from None
            except Exception as exc:  # cronsim raises plain errors on some malformed input
                raise InvalidSchedule("cron", f"{self.cron!r} is not a cron expression: {exc}") from None
        else:
            seconds = self.interval_seconds
            if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 < seconds <= MAX_INTERVAL_SECONDS:
                raise InvalidSchedule(
                    "interval_seconds",
                    f"must be a whole number of seconds from 1 to {MAX_INTERVAL_SECONDS}, not {seconds!r}.",
                )

    def after(self, when: datetime) -> Iterator[datetime]:
        """Fire times strictly after ``when`` (aware), in order, as aware UTC datetimes."""
        if self.cron:
            local = when.astimezone(zone(self.timezone))
            for fire in CronSim(self.cron, local):
                yield fire.astimezone(UTC)
            return
        step = int(self.interval_seconds or 0)
        elapsed = (when - INTERVAL_EPOCH).total_seconds()
        k = math.floor(elapsed / step) + 1
        while True:
            yield INTERVAL_EPOCH + timedelta(seconds=k * step)
            k += 1

    def at_or_before(self, when: datetime) -> Iterator[datetime]:
        """Fire times at or before ``when`` (aware), latest first, as aware UTC datetimes."""
        if self.cron:
            local = (when + timedelta(seconds=1)).astimezone(zone(self.timezone))
            for fire in CronSim(self.cron, local, reverse=True):
                if fire <= when:
                    yield fire.astimezone(UTC)
            return
        step = int(self.interval_seconds or 0)
        k = math.floor((when - INTERVAL_EPOCH).total_seconds() / step)
        while True:
            yield INTERVAL_EPOCH + timedelta(seconds=k * step)
            k -= 1

    def next_after(self, when: datetime) -> datetime:
        return next(self.after(when))

    def preview(self, when: datetime, count: int = 5) -> list[datetime]:
        it = self.after(when)
        return [next(it) for _ in range(count)]


def zone(name: str) -> ZoneInfo:
    """The ``ZoneInfo`` called ``name``, or ``InvalidSchedule`` naming the field ``timezone``."""
    if not isinstance(name, str) or not name:
        raise InvalidSchedule("timezone", f"must be an IANA timezone name such as 'Europe/Berlin', not {name!r}.")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule("timezone", f"{name!r} is not a known IANA timezone (e.g. 'Europe/Berlin').") from None


def check_catchup(policy: str, limit: int) -> None:
    if policy not in CATCHUP_POLICIES:
        raise InvalidSchedule("catchup", f"must be one of {', '.join(CATCHUP_POLICIES)}, not {policy!r}.")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_CATCHUP_LIMIT:
        raise InvalidSchedule("catchup_limit", f"must be a whole number from 1 to {MAX_CATCHUP_LIMIT}, not {limit!r}.")


@dataclass(frozen=True)
class Due:
    """What a tick does for one schedule: ``fire`` these fire times (oldest first); ``missed``: some due fire
    times are left out; ``next_fire_at``: the first fire time after ``now``."""

    fire: list[datetime]
    missed: bool
    next_fire_at: datetime


def due_fire_times(
    timing: Timing, next_fire_at: datetime, now: datetime, policy: str, limit: int, on_time: float = ON_TIME_SECONDS
) -> Due:
    """The fire times from ``next_fire_at`` up to ``now`` that ``policy`` fires:

    * ``skip``: only a fire time found on time (at most ``on_time`` seconds late); missed ones are skipped.
    * ``latest``: the latest due fire time, however late; the older ones are skipped.
    * ``all``: every due fire time, but at most the latest ``limit`` of them.
    """
    due: list[datetime] = []  # latest first; at most limit + 1 are looked at, however long the downtime
    if next_fire_at <= now:
        for fire in timing.at_or_before(now):
            if fire < next_fire_at or len(due) > limit:
                break
            due.append(fire)
    due.reverse()
    following = timing.next_after(now)
    if policy == "skip":
        chosen = [t for t in due if (now - t).total_seconds() <= on_time]
    elif policy == "latest":
        chosen = due[-1:]
    else:
        chosen = due[-limit:]
    return Due(fire=chosen, missed=len(due) > len(chosen), next_fire_at=following)


# The fields of a schedule that code declares and an operator may change in the admin.
DECLARED_FIELDS = (
    "workflow_id",
    "cron",
    "interval_seconds",
    "timezone",
    "input",
    "config",
    "priority",
    "enabled",
    "catchup",
    "catchup_limit",
)


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule declared in code (``WorkflowBuilder.schedule(...)`` or ``WORKFLOW_ENGINE["SCHEDULES"]``)."""

    name: str
    workflow_id: str
    cron: str = ""
    interval_seconds: int | None = None
    timezone: str = "UTC"
    input: Any = None
    config: Any = None
    priority: int = 5
    enabled: bool = True
    catchup: str = "skip"
    catchup_limit: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not SCHEDULE_NAME_RE.match(self.name):
            raise InvalidSchedule("name", f"{self.name!r}: use 1-100 letters, digits, '-' or '_'.")
        Timing(self.cron, self.interval_seconds, self.timezone).check()
        check_catchup(self.catchup, self.catchup_limit)
        if not isinstance(self.enabled, bool):
            raise InvalidSchedule("enabled", f"must be True or False, not {self.enabled!r}.")

    @property
    def timing(self) -> Timing:
        return Timing(self.cron, self.interval_seconds, self.timezone)

    def fields(self) -> dict[str, Any]:
        """The row's declared fields (``input``/``config`` as JSON objects)."""
        values = {name: getattr(self, name) for name in DECLARED_FIELDS}
        values["input"] = self.input if self.input is not None else {}
        values["config"] = self.config if self.config is not None else {}
        return values

    @classmethod
    def from_setting(cls, item: Any, index: int) -> ScheduleSpec:
        """One entry of ``WORKFLOW_ENGINE["SCHEDULES"]``: a dict with ``name``, ``workflow`` and the timing."""
        where = f'WORKFLOW_ENGINE["SCHEDULES"][{index}]'
        if not isinstance(item, dict):
            raise InvalidSchedule(where, f"must be a dict, not {type(item).__name__}.")
        known = {"name", "workflow", *DECLARED_FIELDS} - {"workflow_id"}
        unknown = sorted(set(item) - known)
        if unknown:
            raise InvalidSchedule(where, f"unknown keys {unknown}; known: {sorted(known)}.")
        if "name" not in item or "workflow" not in item:
            raise InvalidSchedule(where, "needs 'name' and 'workflow'.")
        values = {k: v for k, v in item.items() if k != "workflow"}
        try:
            return cls(workflow_id=item["workflow"], **values)
        except InvalidSchedule as exc:
            raise InvalidSchedule(f"{where}.{exc.field}", exc.problem) from None
