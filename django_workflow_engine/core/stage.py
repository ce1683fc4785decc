"""Stage definitions: ``define_stage`` and the :class:`Stage` it builds."""

from __future__ import annotations

import asyncio
import inspect
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, overload

from pydantic import BaseModel, ValidationError

from .errors import InvalidInput, InvalidOutput, WorkflowDefinitionError, format_validation_errors
from .jsonsafe import JSONValueError, check_json_value
from .retry import NO_POLICY, RetryPolicy, Seconds, check_timeout

if TYPE_CHECKING:
    from .context import StageContext

STAGE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class StageResult:
    """What a stage may return instead of a bare output.

    Attributes:
        output: the stage output (a pydantic model instance or a JSON-compatible value).
        custom_metrics: numbers stored in the stage's metrics (``total_cost``/``total_tokens`` feed run totals).
        artifacts: named JSON values saved to blob storage next to the output.
    """

    output: Any
    custom_metrics: Mapping[str, float] = field(default_factory=dict)
    artifacts: Mapping[str, Any] = field(default_factory=dict)


def check_stage_id(stage_id: object) -> str:
    if not isinstance(stage_id, str) or not STAGE_ID_RE.match(stage_id):
        raise WorkflowDefinitionError(
            f"Invalid stage id {stage_id!r}: use 1-100 letters, digits, '-', '_' or '.', starting with a letter or digit."
        )
    return stage_id


def _check_schema(stage_id: str, role: str, schema: object) -> None:
    if schema is not None and not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise WorkflowDefinitionError(
            f"Stage {stage_id!r}: {role}= must be a pydantic BaseModel subclass or None, got {schema!r}."
        )


def model_defaults(schema: type[BaseModel] | None) -> dict[str, Any]:
    """JSON defaults of the top-level fields of ``schema`` that have one (factories are called)."""
    if schema is None:
        return {}
    defaults: dict[str, Any] = {}
    for name, info in schema.model_fields.items():
        if info.is_required():
            continue
        value = info.get_default(call_default_factory=True)
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        defaults[info.alias or name] = value
    # Round-trip through pydantic's JSON mode so enums, dates and the like become plain JSON.
    try:
        return schema.model_validate(defaults).model_dump(mode="json", include=set(schema.model_fields) & set(defaults))
    except ValidationError:
        return defaults


def run_callable(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a stage function that may be ``async def``; coroutines are run to completion.

    When the calling thread already runs an event loop (Jupyter, an ASGI view, Playwright's sync API), the
    coroutine gets a fresh loop on a helper thread instead.
    """
    result = fn(*args)
    if not inspect.isawaitable(result):
        return result
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await(result))
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(_await(result))
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="dwe-async-stage")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


async def _await(awaitable: Any) -> Any:
    return await awaitable


def to_json_output(schema: type[BaseModel] | None, value: Any, stage_id: str) -> Any:
    """Validate a stage's returned output against ``schema`` and return storable JSON.

    Raises:
        InvalidOutput: naming the field that does not validate or cannot be stored.
    """
    if isinstance(value, BaseModel):
        if schema is not None and not isinstance(value, schema):
            value = value.model_dump(mode="python")
        else:
            data = value.model_dump(mode="json")
            return _checked(data, stage_id)
    if schema is not None:
        try:
            value = schema.model_validate(value).model_dump(mode="json")
        except ValidationError as exc:
            raise InvalidOutput(
                f"Stage {stage_id!r} returned invalid output: {format_validation_errors(exc.errors())}", exc.errors()
            ) from None
    return _checked(value, stage_id)


def _checked(value: Any, stage_id: str) -> Any:
    try:
        check_json_value(value)
    except JSONValueError as exc:
        raise InvalidOutput(f"Stage {stage_id!r} returned output that cannot be stored: field {exc}") from None
    return value


@dataclass(frozen=True, eq=False)
class Stage:
    """A unit of work in a workflow. Build one with :func:`define_stage` or ``define_async_batch_stage``.

    Attributes:
        id: unique id within a workflow (also used in storage paths).
        name: human-readable name.
        execute: ``fn(ctx) -> output | StageResult | Suspend`` (``def`` or ``async def``).
        description: free text shown in the admin.
        input: pydantic model for the input, or ``None`` for a stage that takes none.
        output: pydantic model for the output, or ``None`` for untyped JSON.
        config: pydantic model for the stage's config slice, or ``None``.
        dependencies: ids of stages that must have run in an earlier group.
        mode: ``"sync"`` or ``"async-batch"``.
        check_completion: for async-batch stages, ``fn(state, ctx) -> Ready | NotReady | CompletionError``.
        max_attempts: job attempts before the stage fails for good (default: ``WORKFLOW_ENGINE["MAX_ATTEMPTS"]``).
        retry_base_seconds: exponential backoff base (default: ``WORKFLOW_ENGINE["RETRY_BASE_SECONDS"]``).
        retry: the rest of the retry policy (longest wait, jitter, which exceptions are retried).
        timeout: seconds one execution may take (default: ``WORKFLOW_ENGINE["STAGE_TIMEOUT_SECONDS"]``).
        max_concurrent: at most this many executions of this stage at once, across every run and worker.
    """

    id: str
    name: str
    execute: Callable[..., Any]
    description: str = ""
    input: type[BaseModel] | None = None
    output: type[BaseModel] | None = None
    config: type[BaseModel] | None = None
    dependencies: tuple[str, ...] = ()
    mode: Literal["sync", "async-batch"] = "sync"
    check_completion: Callable[..., Any] | None = None
    max_attempts: int | None = None
    retry_base_seconds: float | None = None
    retry: RetryPolicy = NO_POLICY
    timeout: float | None = None
    max_concurrent: int | None = None
    signal: str | None = None  # signal stages: the name of the signal whose payload completes the stage
    # async-batch stages: signals ``Suspend(wait_for_signal=...)`` may wait for (an early one is kept for it)
    signals: tuple[str, ...] = ()

    def __call__(self, ctx: StageContext) -> Any:
        return run_callable(self.execute, ctx)

    def __repr__(self) -> str:
        return f"<Stage {self.id!r}>"

    def parse_input(self, raw: Any) -> BaseModel | None:
        """Validate ``raw`` with the input schema (``None`` schema: the stage gets ``None``)."""
        if self.input is None:
            return None
        if isinstance(raw, self.input):
            return raw
        try:
            return self.input.model_validate(raw)
        except ValidationError as exc:
            raise InvalidInput(
                f"Invalid input for stage {self.id!r}: {format_validation_errors(exc.errors())}", exc.errors()
            ) from None

    def parse_config(self, raw: Mapping[str, Any] | None) -> BaseModel | None:
        if self.config is None:
            return None
        return self.config.model_validate(dict(raw or {}))

    def config_problem(self, raw: Mapping[str, Any] | None) -> str | None:
        """A message describing why ``raw`` is not a valid config slice, or ``None`` if it is."""
        if self.config is None:
            if raw:
                return f"takes no config, got keys {', '.join(sorted(raw))}"
            return None
        if raw is not None and not isinstance(raw, Mapping):
            return f"config must be an object, got {type(raw).__name__}"
        unknown = unknown_config_keys(self.config, raw or {})
        if unknown:
            known = ", ".join(sorted(self.config.model_fields)) or "(none)"
            return f"unknown config key(s) {', '.join(repr(k) for k in unknown)}; known keys: {known}"
        try:
            self.config.model_validate(dict(raw or {}))
        except ValidationError as exc:
            return format_validation_errors(exc.errors())
        return None

    def default_config(self) -> dict[str, Any]:
        return model_defaults(self.config)


def unknown_config_keys(model: type[BaseModel], raw: Mapping[str, Any]) -> list[str]:
    """Keys of ``raw`` that ``model`` has no field (or alias) for, unless the model opts into extra keys.

    Pydantic drops unknown keys silently by default, which hides typos; a config model that sets
    ``model_config = ConfigDict(extra="allow")`` (keep them) or ``extra="ignore"`` (drop them) says so
    explicitly, and ``extra="forbid"`` already fails validation itself.
    """
    if model.model_config.get("extra") is not None:
        return []
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(name)
        for alias in (info.alias, info.validation_alias):
            if isinstance(alias, str):
                names.add(alias)
            elif alias is not None:
                names.update(c for c in getattr(alias, "choices", ()) if isinstance(c, str))
    return sorted(str(k) for k in raw if k not in names)


@overload
def define_stage(
    *,
    id: str | None = None,
    name: str | None = None,
    description: str = "",
    input: type[BaseModel] | None = None,
    output: type[BaseModel] | None = None,
    config: type[BaseModel] | None = None,
    dependencies: Sequence[str] = (),
    execute: None = None,
    max_attempts: int | None = None,
    retry_base_seconds: float | None = None,
    retry: RetryPolicy | None = None,
    timeout: Seconds | None = None,
    max_concurrent: int | None = None,
) -> Callable[[Callable[..., Any]], Stage]: ...


@overload
def define_stage(
    *,
    id: str | None = None,
    name: str | None = None,
    description: str = "",
    input: type[BaseModel] | None = None,
    output: type[BaseModel] | None = None,
    config: type[BaseModel] | None = None,
    dependencies: Sequence[str] = (),
    execute: Callable[..., Any],
    max_attempts: int | None = None,
    retry_base_seconds: float | None = None,
    retry: RetryPolicy | None = None,
    timeout: Seconds | None = None,
    max_concurrent: int | None = None,
) -> Stage: ...


def define_stage(
    *,
    id: str | None = None,
    name: str | None = None,
    description: str = "",
    input: type[BaseModel] | None = None,
    output: type[BaseModel] | None = None,
    config: type[BaseModel] | None = None,
    dependencies: Sequence[str] = (),
    execute: Callable[..., Any] | None = None,
    max_attempts: int | None = None,
    retry_base_seconds: float | None = None,
    retry: RetryPolicy | None = None,
    timeout: Seconds | None = None,
    max_concurrent: int | None = None,
) -> Stage | Callable[[Callable[..., Any]], Stage]:
    """Define a synchronous stage.

    Use it as a decorator (``@define_stage(id=..., name=...)`` over ``def fn(ctx)``) or call it with
    ``execute=fn``. ``id`` defaults to the function's name and ``name`` to the id made readable
    (``def fetch_pages`` gives the id ``fetch_pages`` and the name ``Fetch pages``). The function receives a :class:`~django_workflow_engine.core.context.StageContext` and
    returns the output (a model instance or dict) or a :class:`StageResult`.

    Args:
        id: unique stage id within a workflow (default: the function's name).
        name: human-readable name (default: the id, underscores as spaces, first letter upper).
        description: longer text for the admin.
        input: pydantic model for the input; ``None`` means the stage takes no input.
        output: pydantic model the output is validated against; ``None`` accepts any JSON.
        config: pydantic model for this stage's config; defaults fill missing fields.
        dependencies: stage ids that must run in an earlier execution group.
        execute: the stage function, when not used as a decorator.
        max_attempts: per-stage override of the job attempt limit.
        retry_base_seconds: per-stage override of the retry backoff base.
        retry: a :class:`~django_workflow_engine.RetryPolicy` (longest wait, jitter, ``retry_on`` /
            ``dont_retry_on``); ``max_attempts`` and ``retry_base_seconds`` above are shortcuts for two of its
            fields.
        timeout: seconds (or a ``timedelta``) one execution may take before it fails with "timed out after
            N s" (and is retried like any failure); default ``WORKFLOW_ENGINE["STAGE_TIMEOUT_SECONDS"]``.
        max_concurrent: at most this many executions of this stage at once across the cluster (a GPU, a
            licence, a fragile API); a job over the limit waits, due again a moment later, its attempt unspent.

    Raises:
        WorkflowDefinitionError: for a malformed id, schema or option.
    """

    def build(fn: Callable[..., Any]) -> Stage:
        stage_id = id
        if stage_id is None:
            fn_name = getattr(fn, "__name__", None)
            if not isinstance(fn_name, str) or not STAGE_ID_RE.match(fn_name):
                raise WorkflowDefinitionError(
                    f"define_stage: id= is needed: it defaults to the function's name, and {fn!r} has none usable "
                    "as a stage id (1-100 letters, digits, '-', '_' or '.', starting with a letter or digit)."
                )
            stage_id = fn_name
        stage_name = name
        if stage_name is None and isinstance(stage_id, str):
            stage_name = stage_id.replace("_", " ").strip().capitalize()
        return make_stage(
            id=stage_id,
            name=stage_name,
            description=description,
            input=input,
            output=output,
            config=config,
            dependencies=dependencies,
            execute=fn,
            max_attempts=max_attempts,
            retry_base_seconds=retry_base_seconds,
            retry=retry,
            timeout=timeout,
            max_concurrent=max_concurrent,
        )

    if execute is not None:
        return build(execute)
    return build


def make_stage(
    *,
    id: str,
    name: str,
    execute: Callable[..., Any],
    description: str = "",
    input: type[BaseModel] | None = None,
    output: type[BaseModel] | None = None,
    config: type[BaseModel] | None = None,
    dependencies: Sequence[str] = (),
    mode: Literal["sync", "async-batch"] = "sync",
    check_completion: Callable[..., Any] | None = None,
    max_attempts: int | None = None,
    retry_base_seconds: float | None = None,
    retry: RetryPolicy | None = None,
    timeout: Seconds | None = None,
    max_concurrent: int | None = None,
    signal: str | None = None,
    signals: tuple[str, ...] = (),
) -> Stage:
    check_stage_id(id)
    if not isinstance(name, str) or not name.strip():
        raise WorkflowDefinitionError(f"Stage {id!r}: name= must be a non-empty string.")
    if not callable(execute):
        raise WorkflowDefinitionError(f"Stage {id!r}: execute must be callable, got {execute!r}.")
    for role, schema in (("input", input), ("output", output), ("config", config)):
        _check_schema(id, role, schema)
    if isinstance(dependencies, str):
        dependencies = (dependencies,)
    for dep in dependencies:
        check_stage_id(dep)
    if max_attempts is not None and (not isinstance(max_attempts, int) or max_attempts < 1):
        raise WorkflowDefinitionError(f"Stage {id!r}: max_attempts must be a positive integer, got {max_attempts!r}.")
    if retry_base_seconds is not None and retry_base_seconds < 0:
        raise WorkflowDefinitionError(f"Stage {id!r}: retry_base_seconds must be >= 0, got {retry_base_seconds!r}.")
    if max_concurrent is not None and (
        isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 1
    ):
        raise WorkflowDefinitionError(
            f"Stage {id!r}: max_concurrent must be a positive integer, got {max_concurrent!r}."
        )
    if retry is None:
        retry = NO_POLICY
    elif not isinstance(retry, RetryPolicy):
        raise WorkflowDefinitionError(f"Stage {id!r}: retry= must be a RetryPolicy, got {retry!r}.")
    for option, shortcut, field_value in (
        ("max_attempts", max_attempts, retry.max_attempts),
        ("retry_base_seconds", retry_base_seconds, retry.backoff_base),
    ):
        if shortcut is not None and field_value is not None and shortcut != field_value:
            raise WorkflowDefinitionError(
                f"Stage {id!r}: {option}={shortcut!r} disagrees with its retry policy ({field_value!r}); give one."
            )
    return Stage(
        id=id,
        name=name,
        execute=execute,
        description=description,
        input=input,
        output=output,
        config=config,
        dependencies=tuple(dependencies),
        mode=mode,
        check_completion=check_completion,
        max_attempts=max_attempts if max_attempts is not None else retry.max_attempts,
        retry_base_seconds=retry_base_seconds if retry_base_seconds is not None else retry.backoff_base,
        retry=retry,
        timeout=check_timeout(f"Stage {id!r}", "timeout", timeout),
        max_concurrent=max_concurrent,
        signal=signal,
        signals=signals,
    )
