"""Exceptions a user of the engine can cause or catch.

Every exception subclasses :class:`WorkflowEngineError`. Messages say what was wrong and how to fix it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any


class WorkflowEngineError(Exception):
    """Base class of every error raised by django-workflow-engine."""


class WorkflowDefinitionError(WorkflowEngineError):
    """A stage or workflow definition is malformed (raised while defining or building it)."""


class WorkflowNotFound(WorkflowEngineError):
    """No workflow with the given id is registered."""

    def __init__(self, workflow_id: str, available: Iterable[str] = ()):
        self.workflow_id = workflow_id
        names = ", ".join(sorted(available)) or "(none)"
        super().__init__(
            f"Workflow {workflow_id!r} is not registered. Registered workflows: {names}. "
            "Define it in an app's workflows.py or list it in WORKFLOW_ENGINE['WORKFLOWS']."
        )


class StageNotFound(WorkflowEngineError):
    """The workflow has no stage with the given id."""

    def __init__(self, workflow_id: str, stage_id: str, available: Iterable[str] = ()):
        self.workflow_id = workflow_id
        self.stage_id = stage_id
        names = ", ".join(available) or "(none)"
        super().__init__(f"Workflow {workflow_id!r} has no stage {stage_id!r}. Its stages are: {names}.")


class RunNotFound(WorkflowEngineError):
    """No workflow run with the given id exists."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        super().__init__(f"Workflow run {run_id!r} does not exist.")


class InvalidRunState(WorkflowEngineError):
    """The run is in a state that does not allow the requested operation."""

    def __init__(self, run_id: str, status: str, operation: str, allowed: Sequence[str]):
        self.run_id = run_id
        self.status = status
        super().__init__(
            f"Cannot {operation} workflow run {run_id!r}: it is {status}; it must be one of {', '.join(allowed)}."
        )


def format_validation_errors(errors: Sequence[Mapping[str, Any]]) -> str:
    """Render pydantic ``ValidationError.errors()`` as ``field 'a.b': message; ...``."""
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
        parts.append(f"field {loc!r}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


class ValidationFailed(WorkflowEngineError):
    """Base for schema validation failures; ``errors`` holds pydantic's error dicts."""

    def __init__(self, message: str, errors: Sequence[Mapping[str, Any]] = ()):
        self.errors = list(errors)
        super().__init__(message)


class InvalidInput(ValidationFailed):
    """Workflow or stage input failed its pydantic schema, or is not storable."""


class InvalidConfig(ValidationFailed):
    """Workflow config failed a stage's config schema."""

    def __init__(self, workflow_id: str, problems: Mapping[str, str]):
        self.workflow_id = workflow_id
        self.problems = dict(problems)
        detail = "; ".join(f"stage {stage!r}: {msg}" for stage, msg in problems.items())
        super().__init__(f"Invalid config for workflow {workflow_id!r}: {detail}")


class InvalidOutput(ValidationFailed):
    """A stage returned output that does not match its output schema or cannot be stored as JSON."""


class MissingStageOutput(WorkflowEngineError):
    """``ctx.require()`` asked for a stage whose output is not available."""

    def __init__(self, stage_id: str, available: Iterable[str]):
        self.stage_id = stage_id
        names = ", ".join(sorted(available)) or "(none)"
        super().__init__(f"Missing required stage output: {stage_id!r}. Available stages: {names}.")


class InvalidBlobKey(WorkflowEngineError):
    """A blob key is absolute, empty, or escapes its root with ``..``."""


class BlobNotFound(WorkflowEngineError):
    """No blob is stored under the key."""

    def __init__(self, key: str):
        self.key = key
        super().__init__(f"Blob not found: {key!r}")


class StaleVersionError(WorkflowEngineError):
    """An optimistic-concurrency update found a different version than expected."""

    def __init__(self, entity: str, entity_id: str, expected: int, actual: int | None = None):
        self.entity = entity
        self.entity_id = entity_id
        self.expected = expected
        self.actual = actual
        super().__init__(f"{entity} {entity_id!r} changed concurrently: expected version {expected}, found {actual}.")


class IdempotencyInProgressError(WorkflowEngineError):
    """Another dispatch of the same command with the same idempotency key is still running."""

    def __init__(self, key: str, command_type: str):
        self.key = key
        self.command_type = command_type
        super().__init__(f'Command "{command_type}" with idempotency key "{key}" is already in progress.')


class BudgetExceeded(WorkflowEngineError):
    """An AI call would take a run's spend past its ``max_cost``."""

    def __init__(self, run_id: str, budget: Any, spent: Any):
        self.run_id = run_id
        self.budget = budget
        self.spent = spent
        super().__init__(f"Run {run_id!r} exceeded its cost budget: budget {budget}, spent {spent}.")


class StageDeferred(WorkflowEngineError):
    """Raised inside a stage: run it again at ``until``, as the same attempt (not a failure, no retry used).

    The engine puts the stage's job back in the queue, due at ``until``, with ``reason`` as its wait reason
    (shown in the admin); AI calls the stage already made are replayed from the call journal, not paid again.
    """

    def __init__(self, until: datetime, reason: str):
        self.until = until
        self.reason = reason
        super().__init__(f"Deferred: {reason}")


class RateLimited(StageDeferred):
    """An AI call is over a rate limit (``AI_RATE_LIMITS``, or the provider's 429) for longer than the brief
    wait: inside a stage, the stage is deferred until ``until``; outside one, the caller gets this error."""

    def __init__(self, model: str, until: datetime):
        self.model = model
        shown = until.astimezone(UTC) if until.tzinfo else until
        super().__init__(until, f"rate limit {model} until {shown:%H:%M:%S}" + (" UTC" if until.tzinfo else ""))


class InvalidArgument(WorkflowEngineError, ValueError):
    """An argument of an engine call is malformed or beyond its documented limit; ``field`` names it.

    Raised before anything is written. The subclasses below name the argument in their type, so callers can
    catch exactly the one they care about.
    """

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"Invalid {field}: {problem}")


class InvalidWorkflowId(InvalidArgument):
    """``workflow_id`` is not a string."""


class InvalidMetadata(InvalidArgument):
    """Run ``metadata`` is not a JSON object the databases can store, or is too large."""


class InvalidPriority(InvalidArgument):
    """``priority`` is not an integer in the range the database column holds."""


class InvalidStartTime(InvalidArgument):
    """``start_at`` / ``delay`` of a delayed start: a naive datetime, a negative or non-finite delay, or both."""


class InvalidMaxCost(InvalidArgument):
    """``max_cost`` is not a finite, non-negative number the database column holds."""


class InvalidIdempotencyKey(InvalidArgument):
    """An ``idempotency_key`` is not a non-empty string of at most 255 storable characters."""


class InvalidReason(InvalidArgument):
    """A cancel ``reason`` is not a storable string of at most the documented length."""


class InvalidDeadline(InvalidArgument):
    """A run ``deadline`` is not an aware datetime in the future or a positive duration."""


class NonRetryableError(WorkflowEngineError):
    """Raise it from a stage to fail the stage at once, whatever attempts its retry policy has left."""


class StageTimedOut(WorkflowEngineError):
    """A stage ran past its ``timeout``; retried by its retry policy like any other failure."""

    def __init__(self, stage_id: str, seconds: float):
        self.stage_id = stage_id
        self.seconds = seconds
        super().__init__(f"Stage {stage_id!r} timed out after {seconds:g} s.")


class RunDeadlineExceeded(WorkflowEngineError):
    """A stage was stopped because its run's deadline came (the run fails with "deadline exceeded")."""

    def __init__(self, stage_id: str):
        self.stage_id = stage_id
        super().__init__(f"Run deadline exceeded while stage {stage_id!r} ran.")


class RunNotRunning(WorkflowEngineError):
    """The stage's run was cancelled or failed (a deadline passed, say) while the stage ran.

    ``ctx.check_cancelled()`` raises it, and the AI helper raises it instead of making a new provider call:
    the stage's result would be discarded anyway."""

    def __init__(self, run_id: str, status: str):
        self.run_id = run_id
        self.status = status
        super().__init__(f"Run {run_id!r} is {status}; the stage stops here and its result is discarded.")


class SignalNotExpected(WorkflowEngineError):
    """No stage of the run's workflow waits for a signal of this name, or its stage already received one."""

    def __init__(self, run_id: str, name: str, problem: str):
        self.run_id = run_id
        self.name = name
        super().__init__(f"Cannot deliver signal {name!r} to workflow run {run_id!r}: {problem}")
