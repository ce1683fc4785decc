"""Workflows: stages arranged in execution groups, built with :class:`WorkflowBuilder`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from .concurrency import ConcurrencyKeyFn, check_concurrency, run_key
from .errors import (
    InvalidConfig,
    InvalidInput,
    StageNotFound,
    WorkflowDefinitionError,
    WorkflowEngineError,
    format_validation_errors,
)
from .fanout import MapSpec, OnError, Over, split_item
from .jsonsafe import JSONValueError, check_json_value
from .retry import Seconds, check_timeout
from .schedule import InvalidSchedule, ScheduleSpec
from .stage import STAGE_ID_RE, Stage


@dataclass(frozen=True)
class ConfigValidation:
    """Result of :meth:`Workflow.validate_config`: ``errors`` maps stage id to a message."""

    valid: bool
    errors: dict[str, str] = field(default_factory=dict)


class Workflow:
    """An immutable, validated workflow definition. Build one with :class:`WorkflowBuilder`.

    Stages are arranged in execution groups (1-based): groups run strictly in order, the stages inside one
    group run concurrently.
    """

    def __init__(
        self,
        id: str,
        name: str,
        description: str,
        input: type[BaseModel] | None,
        output: type[BaseModel] | None,
        groups: Sequence[Sequence[Stage]],
        label: str | None = None,
        max_concurrent_runs: int | None = None,
        concurrency_key: ConcurrencyKeyFn | None = None,
        timeout: Seconds | None = None,
        maps: Sequence[MapSpec] = (),
    ):
        self.id = id
        self.name = name
        self.description = description
        self.input = input
        self.output = output
        self.max_concurrent_runs, self.concurrency_key = check_concurrency(id, max_concurrent_runs, concurrency_key)
        self.timeout = check_timeout(f"Workflow {id!r}", "timeout", timeout)
        self.maps: dict[str, MapSpec] = {spec.stage_id: spec for spec in maps}  # added with WorkflowBuilder.map()
        self.label = label  # the input field that names a run for people (a ticket id, an order number)
        self.schedules: tuple[ScheduleSpec, ...] = ()  # declared with WorkflowBuilder.schedule()
        self._groups: tuple[tuple[Stage, ...], ...] = tuple(tuple(g) for g in groups)
        self._stages: dict[str, Stage] = {}
        self._group_of: dict[str, int] = {}
        self._number_of: dict[str, int] = {}
        for group_index, group in enumerate(self._groups, start=1):
            for stage in group:
                self._stages[stage.id] = stage
                self._group_of[stage.id] = group_index
                self._number_of[stage.id] = len(self._number_of) + 1

    def __repr__(self) -> str:
        return f"<Workflow {self.id!r}: {' -> '.join('[' + ', '.join(s.id for s in g) + ']' for g in self._groups)}>"

    # -- structure -----------------------------------------------------------------------------------------

    def execution_plan(self) -> tuple[tuple[Stage, ...], ...]:
        """The execution groups in order; each group is a tuple of stages."""
        return self._groups

    def stage_ids(self) -> list[str]:
        """All stage ids in definition order."""
        return list(self._stages)

    def stages(self) -> list[Stage]:
        return list(self._stages.values())

    def has_stage(self, stage_id: str) -> bool:
        """Whether ``stage_id`` names a stage of this workflow (or an item of one of its maps)."""
        return stage_id in self._stages or (split_item(stage_id)[1] is not None and self.map_of(stage_id) is not None)

    def stage(self, stage_id: str) -> Stage:
        """The stage with ``stage_id`` (the mapped stage for an item id such as ``"summarize[3]"``); raises
        :class:`StageNotFound` if there is none."""
        try:
            return self._stages[stage_id]
        except KeyError:
            base, index = split_item(stage_id)
            if index is not None and base in self.maps:
                return self._stages[base]
            raise StageNotFound(self.id, stage_id, self._stages) from None

    def map_of(self, stage_id: str) -> MapSpec | None:
        """The :class:`MapSpec` of map stage ``stage_id`` (or of the map an item id belongs to), else None."""
        return self.maps.get(split_item(stage_id)[0])

    def group_map(self, number: int) -> MapSpec | None:
        """The :class:`MapSpec` of execution group ``number`` when it is a map, else None."""
        stages = self.group(number)
        return self.maps.get(stages[0].id) if len(stages) == 1 else None

    def group_of(self, stage_id: str) -> int:
        """1-based execution group of ``stage_id``."""
        return self._group_of[self.stage(stage_id).id]

    def stage_number(self, stage_id: str) -> int:
        """1-based position of ``stage_id`` in definition order."""
        return self._number_of[self.stage(stage_id).id]

    def group(self, number: int) -> tuple[Stage, ...]:
        """Stages of execution group ``number`` (1-based); empty past the last group."""
        if 1 <= number <= len(self._groups):
            return self._groups[number - 1]
        return ()

    @property
    def group_count(self) -> int:
        return len(self._groups)

    # -- input and config ----------------------------------------------------------------------------------

    def parse_input(self, raw: Any) -> Any:
        """Validate workflow input and return it as storable JSON.

        Raises:
            InvalidInput: naming every failing field.
        """
        if self.input is None and raw is None:
            return {}  # a workflow without an input schema started with no input
        if self.input is not None:
            if isinstance(raw, BaseModel):
                raw = raw.model_dump(mode="python")
            try:
                raw = self.input.model_validate(raw).model_dump(mode="json")
            except ValidationError as exc:
                raise InvalidInput(
                    f"Invalid input for workflow {self.id!r}: {format_validation_errors(exc.errors())}", exc.errors()
                ) from None
        elif isinstance(raw, BaseModel):
            raw = raw.model_dump(mode="json")
        try:
            check_json_value(raw)
        except JSONValueError as exc:
            raise InvalidInput(f"Invalid input for workflow {self.id!r}: field {exc}") from None
        return raw

    def run_concurrency_key(self, data: Any) -> str | None:
        """The concurrency key of a run with validated input ``data`` (``None``: not limited).

        Raises:
            ConcurrencyKeyError: the ``concurrency_key`` function raised or returned a non-string.
        """
        return run_key(self.id, self.max_concurrent_runs, self.concurrency_key, data)

    def default_config(self) -> dict[str, dict[str, Any]]:
        """``{stage_id: defaults}`` for every stage (``{}`` for stages without config defaults)."""
        return {stage.id: stage.default_config() for stage in self._stages.values()}

    def validate_config(self, config: Mapping[str, Any] | None) -> ConfigValidation:
        """Check every stage's slice of ``config`` (missing slices count as ``{}``); collects all errors."""
        errors: dict[str, str] = {}
        config = config or {}
        if not isinstance(config, Mapping):
            return ConfigValidation(
                False, {"(config)": f"must be an object keyed by stage id, got {type(config).__name__}"}
            )
        for key in config:
            if key not in self._stages:
                errors[str(key)] = f"unknown stage; stages are {', '.join(self._stages)}"
        for stage in self._stages.values():
            problem = stage.config_problem(config.get(stage.id))
            if problem:
                errors[stage.id] = problem
        return ConfigValidation(not errors, errors)

    def resolve_config(self, config: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
        """Merge user config over defaults per stage and validate it; returns the storable config map.

        A provided stage object is merged key by key over that stage's defaults.

        Raises:
            InvalidConfig: naming each failing stage and field.
        """
        if config is not None and not isinstance(config, Mapping):
            raise InvalidConfig(
                self.id, {"(config)": f"must be an object keyed by stage id, got {type(config).__name__}"}
            )
        merged = self.default_config()
        for stage_id, value in (config or {}).items():
            if isinstance(value, BaseModel):
                value = value.model_dump(mode="json")
            if stage_id in merged and isinstance(value, Mapping):
                merged[stage_id] = {**merged[stage_id], **value}
            else:
                merged[stage_id] = value
        result = self.validate_config(merged)
        if not result.valid:
            raise InvalidConfig(self.id, result.errors)
        for stage in self._stages.values():
            if stage.config is not None:
                merged[stage.id] = stage.config.model_validate(merged[stage.id]).model_dump(mode="json")
        try:
            check_json_value(merged)
        except JSONValueError as exc:
            raise InvalidConfig(self.id, {"(config)": str(exc)}) from None
        return merged


class WorkflowBuilder:
    """Chain stages into a :class:`Workflow`.

    Example::

        workflow = (
            WorkflowBuilder("doc", "Document pipeline", input=Doc, output=Report)
            .pipe(ingest)
            .parallel([summarize, classify])
            .pipe(report)
            .build()
        )

    Args:
        id: the workflow id (1-100 letters, digits, ``-``, ``_`` or ``.``).
        name: a human name, shown in the admin.
        description: free text.
        input: the pydantic model of the run's input (``None``: no input).
        output: the pydantic model of the run's output.
        label: the name of a top-level field of ``input`` that identifies a run for people (a ticket id, an
            order number); the admin's run list shows it and finds runs by it. Default ``None``.
        max_concurrent_runs: at most this many runs (sharing a key, with ``concurrency_key``) are RUNNING at
            once; the others wait PENDING and start in priority, then FIFO, order. Default ``None``: no limit.
        concurrency_key: ``fn(input) -> str | None``, the key runs are limited by (say, a customer id); ``None``
            from it means that run is not limited. Without it the limit holds for the whole workflow.
        timeout: seconds (or a ``timedelta``) each run has from its creation; a run not finished by then fails
            with "deadline exceeded" (``engine.start(deadline=...)`` overrides it per run). Default ``None``.

    Raises:
        WorkflowDefinitionError: a bad id, a schema that is not a BaseModel, or a ``label`` that is not a
            field of ``input``; a ``max_concurrent_runs`` that is not a positive integer, or a
            ``concurrency_key`` that is not callable.
    """

    def __init__(
        self,
        id: str,
        name: str,
        description: str = "",
        *,
        input: type[BaseModel] | None = None,
        output: type[BaseModel] | None = None,
        label: str | None = None,
        max_concurrent_runs: int | None = None,
        concurrency_key: ConcurrencyKeyFn | None = None,
        timeout: Seconds | None = None,
    ):
        if not isinstance(id, str) or not STAGE_ID_RE.match(id):
            raise WorkflowDefinitionError(
                f"Invalid workflow id {id!r}: use 1-100 letters, digits, '-', '_' or '.', starting with a letter or digit."
            )
        for role, schema in (("input", input), ("output", output)):
            if schema is not None and not (isinstance(schema, type) and issubclass(schema, BaseModel)):
                raise WorkflowDefinitionError(
                    f"Workflow {id!r}: {role}= must be a pydantic BaseModel subclass or None."
                )
        if label is not None and (input is None or label not in input.model_fields):
            fields = ", ".join(input.model_fields) if input is not None else "(no input model)"
            raise WorkflowDefinitionError(
                f"Workflow {id!r}: label={label!r} must name a field of the input model (fields: {fields})."
            )
        self.id = id
        self.name = name
        self.description = description
        self.input = input
        self.output = output
        self.label = label
        self.max_concurrent_runs, self.concurrency_key = check_concurrency(id, max_concurrent_runs, concurrency_key)
        self.timeout = check_timeout(f"Workflow {id!r}", "timeout", timeout)
        self._groups: list[list[Stage]] = []
        self._seen: dict[str, int] = {}
        self._schedules: list[ScheduleSpec] = []
        self._maps: list[MapSpec] = []

    def schedule(
        self,
        name: str,
        *,
        cron: str = "",
        interval_seconds: int | None = None,
        timezone: str = "UTC",
        input: Any = None,
        config: Any = None,
        priority: int = 5,
        enabled: bool = True,
        catchup: str = "skip",
        catchup_limit: int = 10,
    ) -> WorkflowBuilder:
        """Start this workflow on a cron expression (read in ``timezone``) or every ``interval_seconds``, with
        ``input``. Synced to a ``WorkflowSchedule`` row by the maintenance tick (see docs/schedules.md);
        ``catchup``: ``skip``, ``latest`` or ``all`` (at most ``catchup_limit``) missed fire times."""
        self._schedules.append(
            ScheduleSpec(
                name=name,
                workflow_id=self.id,
                cron=cron,
                interval_seconds=interval_seconds,
                timezone=timezone,
                input=input,
                config=config,
                priority=priority,
                enabled=enabled,
                catchup=catchup,
                catchup_limit=catchup_limit,
            )
        )
        return self

    def pipe(self, stage: Stage) -> WorkflowBuilder:
        """Add ``stage`` as its own execution group, after everything added so far."""
        self._add_group([stage])
        return self

    def parallel(self, stages: Sequence[Stage]) -> WorkflowBuilder:
        """Add ``stages`` as one execution group; they run concurrently and the next group receives
        ``{stage_id: output}`` of all of them."""
        if isinstance(stages, Stage) or not stages:
            raise WorkflowDefinitionError(f"Workflow {self.id!r}: parallel() takes a non-empty list of stages.")
        self._add_group(list(stages))
        return self

    def map(
        self, stage: Stage, *, over: Over = None, max_parallel: int | None = None, on_error: OnError = "fail"
    ) -> WorkflowBuilder:
        """Add ``stage`` as its own execution group, run once per item of a list the previous group produced
        (see docs/fan-out.md). Each item is its own stage record (``stage_id[index]``) and job, with the item as
        its input; the next group receives the outputs in item order.

        Args:
            stage: the stage each item runs.
            over: where the list is: ``None`` (the previous group's output), a field name of that output, or a
                function ``fn(output) -> list``. Default ``None``.
            max_parallel: at most this many items queued or running at once. Default ``None``: no limit.
            on_error: ``"fail"`` (default): an item that fails for good fails the run; ``"continue"``: the next
                group receives ``{"outputs": [...], "errors": [{"index": i, "error": "..."}]}``.

        Raises:
            WorkflowDefinitionError: the map is the first group, an argument is out of range, or the stage has
                ``max_concurrent``.
        """
        if not self._groups:
            raise WorkflowDefinitionError(
                f"Workflow {self.id!r}: map({getattr(stage, 'id', stage)!r}) needs a stage before it whose output "
                "holds the list to map over."
            )
        if getattr(stage, "max_concurrent", None) is not None:
            raise WorkflowDefinitionError(
                f"Workflow {self.id!r}: map({stage.id!r}): a mapped stage cannot have max_concurrent (a limit "
                "across runs); limit its items with max_parallel=."
            )
        spec = MapSpec(getattr(stage, "id", str(stage)), over, max_parallel, on_error)
        self._add_group([stage])
        self._maps.append(spec)
        return self

    def _add_group(self, stages: list[Stage]) -> None:
        group_number = len(self._groups) + 1
        ids_in_group: set[str] = set()
        for stage in stages:
            if not isinstance(stage, Stage):
                raise WorkflowDefinitionError(
                    f"Workflow {self.id!r}: expected a Stage (from define_stage), got {stage!r}."
                )
            if stage.id in self._seen or stage.id in ids_in_group:
                raise WorkflowDefinitionError(f"Workflow {self.id!r}: duplicate stage id {stage.id!r}.")
            ids_in_group.add(stage.id)
        for stage in stages:
            missing = [dep for dep in stage.dependencies if dep not in self._seen and dep not in ids_in_group]
            if missing:
                current = ", ".join(self._seen) or "(none)"
                raise WorkflowDefinitionError(
                    f'Stage "{stage.id}" has missing dependencies: {", ".join(missing)}. These stages must be added '
                    f'to the workflow before "{stage.id}". Current stages: {current}.'
                )
            same_group = [dep for dep in stage.dependencies if dep in ids_in_group]
            if same_group:
                raise WorkflowDefinitionError(
                    f'Stage "{stage.id}" depends on {", ".join(same_group)}, which runs in the same parallel group; '
                    "a dependency must run in an earlier group (use pipe() to order them)."
                )
        for stage in stages:
            self._seen[stage.id] = group_number
        self._groups.append(stages)

    def build(self) -> Workflow:
        """Return the immutable :class:`Workflow`; raises if it has no stages."""
        if not self._groups:
            raise WorkflowDefinitionError(f"Workflow {self.id!r} has no stages: add some with pipe() or parallel().")
        waiters: dict[str, str] = {}
        for stage in (s for group in self._groups for s in group):
            for name in {stage.signal, *stage.signals} - {None}:
                if name in waiters:
                    raise WorkflowDefinitionError(
                        f"Workflow {self.id!r}: stages {waiters[name]!r} and {stage.id!r} both wait for signal "
                        f"{name!r}; a signal names one stage of its workflow: give them different names."
                    )
                waiters[str(name)] = stage.id
        workflow = Workflow(
            self.id,
            self.name,
            self.description,
            self.input,
            self.output,
            self._groups,
            self.label,
            max_concurrent_runs=self.max_concurrent_runs,
            concurrency_key=self.concurrency_key,
            timeout=self.timeout,
            maps=self._maps,
        )
        for spec in self._schedules:  # a bad input or config fails now, not at 02:00
            try:
                workflow.parse_input(spec.input if spec.input is not None else {})
            except WorkflowEngineError as exc:
                raise InvalidSchedule("input", f"schedule {spec.name!r} of workflow {self.id!r}: {exc}") from None
            try:
                workflow.resolve_config(spec.config)
            except WorkflowEngineError as exc:
                raise InvalidSchedule("config", f"schedule {spec.name!r} of workflow {self.id!r}: {exc}") from None
        workflow.schedules = tuple(self._schedules)
        return workflow
