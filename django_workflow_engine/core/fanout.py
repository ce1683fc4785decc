"""Dynamic fan-out: a map stage runs once per item of a list its previous group produced.

A map is one execution group holding one stage. At run time the engine writes one record for the map itself
(its ``stage_id``, holding the counts and, at the end, the outputs in item order) and one record per item,
``stage_id[index]``, each with its own job: retried, priced and executed like any other stage.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .errors import WorkflowDefinitionError, WorkflowEngineError

OnError = Literal["fail", "continue"]
Over = str | Callable[[Any], Any] | None

DEFAULT_MAX_MAP_ITEMS = 10_000
# Room for "[index]" in the 100 characters a stage id column holds.
MAP_STAGE_ID_MAX = 88
_ITEM_RE = re.compile(r"^(?P<base>.+)\[(?P<index>\d{1,10})\]$")


class MapInputError(WorkflowEngineError):
    """A map's items could not be taken from its input: not a list, or more items than ``MAX_MAP_ITEMS``.
    The run fails with this message and no item is created."""


@dataclass(frozen=True)
class MapSpec:
    """How a map stage takes its items and handles failures.

    Attributes:
        stage_id: the mapped stage.
        over: where the list is in the previous group's output: ``None`` (default) for the output itself, a
            field name of it, or a function ``fn(output) -> list``.
        max_parallel: at most this many items are queued or running at once (default ``None``: all of them).
        on_error: ``"fail"`` (default): an item that fails for good fails the map and the run; ``"continue"``:
            the map finishes and the next stage receives ``{"outputs": [...], "errors": [...]}``.
    """

    stage_id: str
    over: Over = None
    max_parallel: int | None = None
    on_error: OnError = "fail"

    def __post_init__(self) -> None:
        where = f"map({self.stage_id!r})"
        if len(self.stage_id) > MAP_STAGE_ID_MAX:
            raise WorkflowDefinitionError(
                f"{where}: a mapped stage id may have at most {MAP_STAGE_ID_MAX} characters (its items are "
                "named 'id[index]')."
            )
        if self.over is not None and not isinstance(self.over, str) and not callable(self.over):
            raise WorkflowDefinitionError(
                f"{where}: over= must be None, a field name or a function, got {self.over!r}."
            )
        mp = self.max_parallel
        if mp is not None and (isinstance(mp, bool) or not isinstance(mp, int) or mp < 1):
            raise WorkflowDefinitionError(f"{where}: max_parallel= must be a positive integer or None, got {mp!r}.")
        if self.on_error not in ("fail", "continue"):
            raise WorkflowDefinitionError(f"{where}: on_error= must be 'fail' or 'continue', got {self.on_error!r}.")

    def items(self, previous: Any, limit: int) -> list[Any]:
        """The items of this map from the previous group's output ``previous``.

        Raises:
            MapInputError: the value is not a list, or holds more than ``limit`` items.
        """
        where = f"Map stage {self.stage_id!r}"
        value = previous
        if isinstance(self.over, str):
            if not isinstance(previous, Mapping) or self.over not in previous:
                got = f"keys {', '.join(map(str, previous))}" if isinstance(previous, Mapping) else _kind(previous)
                raise MapInputError(
                    f"{where}: over={self.over!r} names no field of the previous stage's output (it has {got})."
                )
            value = previous[self.over]
        elif self.over is not None:
            try:
                value = self.over(previous)
            except Exception as exc:
                raise MapInputError(f"{where}: the over= function raised {type(exc).__name__}: {exc}") from None
        source = "the previous stage's output" if self.over is None else f"over={_name(self.over)}"
        if not isinstance(value, list | tuple):
            raise MapInputError(f"{where}: {source} must be a list, got {_kind(value)}.")
        if len(value) > limit:
            raise MapInputError(
                f"{where}: {source} has {len(value)} items, more than MAX_MAP_ITEMS ({limit}); split the input "
                "or raise the setting."
            )
        return list(value)

    def join(self, outputs: list[Any], errors: list[dict[str, Any]]) -> Any:
        """What the next group receives: the outputs in item order (with ``on_error="continue"``, beside the
        errors: ``{"outputs": [...], "errors": [{"index": i, "error": "..."}]}``, a failed item's output None)."""
        if self.on_error == "continue":
            return {"outputs": outputs, "errors": errors}
        return outputs


def item_stage_id(stage_id: str, index: int) -> str:
    """The stage id of item ``index`` of map ``stage_id``: ``"summarize[3]"``."""
    return f"{stage_id}[{index}]"


def split_item(stage_id: str) -> tuple[str, int | None]:
    """``("summarize", 3)`` for ``"summarize[3]"``; ``(stage_id, None)`` for a stage id that names no item."""
    match = _ITEM_RE.match(stage_id)
    if match is None:
        return stage_id, None
    return match["base"], int(match["index"])


def counted(metrics: Mapping[str, Any] | None, done: int, failed: Sequence[int]) -> dict[str, Any]:
    """A map record's metrics after ``done`` more items completed and the items ``failed`` failed for good:
    ``map_done`` + done, ``map_failed`` joined (sorted, once each), ``map_queued`` up by the items newly settled
    (at most ``map_items``). What ``count_map_items`` writes in one atomic step (PostgreSQL: in SQL)."""
    counts = dict(metrics or {})
    known = set(counts.get("map_failed") or [])
    total = int(counts.get("map_items", 0))
    counts["map_done"] = int(counts.get("map_done", 0)) + done
    counts["map_failed"] = sorted(known | set(failed))
    freed = done + len(counts["map_failed"]) - len(known)
    counts["map_queued"] = min(total, int(counts.get("map_queued", total)) + freed)
    return counts


def _kind(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _name(over: Over) -> str:
    return repr(over) if isinstance(over, str) else getattr(over, "__name__", "function")
