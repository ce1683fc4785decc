"""Run concurrency limits of a workflow: the knobs, their validation, and the key of one run's input.

No Django here: the kernel's ``kernel/concurrency.py`` admits runs against these limits in the database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import InvalidInput, WorkflowDefinitionError, WorkflowEngineError

#: The key of every run of a workflow limited without a ``concurrency_key`` function.
WHOLE_WORKFLOW = ""
MAX_KEY_LENGTH = 255

ConcurrencyKeyFn = Callable[[Any], "str | None"]


class ConcurrencyKeyError(InvalidInput):
    """A workflow's ``concurrency_key`` function raised or returned something other than a string or ``None``;
    the run was not created."""


class ConcurrencyLimitReached(WorkflowEngineError):
    """A rerun was refused: every slot of the run's concurrency key is taken, or runs wait for one before it.
    Nothing was changed; rerun it when a slot frees."""

    def __init__(self, run_id: str, workflow_id: str, key: str, limit: int):
        self.run_id, self.workflow_id, self.key, self.limit = run_id, workflow_id, key, limit
        scope = f"key {key!r}" if key else "the whole workflow"
        super().__init__(
            f"Cannot rerun workflow run {run_id!r}: workflow {workflow_id!r} allows {limit} running run(s) for "
            f"{scope} and none is free (or runs are waiting for one); rerun it when a run of that key finishes."
        )


def check_limit(owner: str, name: str, value: Any) -> int | None:
    """``value`` if it is ``None`` or a positive int; raises :class:`WorkflowDefinitionError` naming ``owner``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise WorkflowDefinitionError(f"{owner}: {name} must be a positive integer or None, got {value!r}.")
    return value


def check_concurrency(workflow_id: str, limit: Any, key: Any) -> tuple[int | None, ConcurrencyKeyFn | None]:
    """Validate ``WorkflowBuilder(max_concurrent_runs=..., concurrency_key=...)``."""
    owner = f"Workflow {workflow_id!r}"
    limit = check_limit(owner, "max_concurrent_runs", limit)
    if key is not None and not callable(key):
        raise WorkflowDefinitionError(
            f"{owner}: concurrency_key must be a function of the run's input returning a string or None, got {key!r}."
        )
    if key is not None and limit is None:
        raise WorkflowDefinitionError(f"{owner}: concurrency_key needs max_concurrent_runs (the limit per key).")
    return limit, key


def run_key(workflow_id: str, limit: int | None, key_fn: ConcurrencyKeyFn | None, data: Any) -> str | None:
    """The concurrency key of a run with validated input ``data``: ``None`` when the run is not limited.

    Raises:
        ConcurrencyKeyError: the key function raised or returned a non-string (nothing is written).
    """
    if limit is None:
        return None
    if key_fn is None:
        return WHOLE_WORKFLOW
    try:
        key = key_fn(data)
    except Exception as exc:
        raise ConcurrencyKeyError(
            f"concurrency_key of workflow {workflow_id!r} raised {type(exc).__name__}: {exc}; the run was not started."
        ) from exc
    if key is None:
        return None
    if not isinstance(key, str):
        raise ConcurrencyKeyError(
            f"concurrency_key of workflow {workflow_id!r} returned {type(key).__name__} {key!r}; "
            "it must return a string or None. The run was not started."
        )
    if len(key) > MAX_KEY_LENGTH:
        raise ConcurrencyKeyError(
            f"concurrency_key of workflow {workflow_id!r} returned a key of {len(key)} characters; "
            f"the limit is {MAX_KEY_LENGTH}. The run was not started."
        )
    return key
