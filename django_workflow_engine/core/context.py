"""What a stage function sees: :class:`StageContext` (and :class:`CheckContext` for ``check_completion``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from .errors import InvalidArgument, InvalidBlobKey, MissingStageOutput, RunNotRunning

LOG_LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")
CANCEL_CHECK_SECONDS = 1.0
STOPPED_RUN_STATUSES = ("CANCELLED", "FAILED", "COMPLETED")

LogSink = Callable[[str, str, dict[str, Any]], None]


class StageAI(Protocol):
    """What ``ctx.ai()`` returns: the engine's ``AIHelper`` (``django_workflow_engine.ai.helper``), described
    here so core imports neither litellm nor Django. Results are ``TextResult``/``ObjectResult``/``EmbedResult``,
    ``TextStream``, ``BatchHandle`` and ``BatchResults`` of ``django_workflow_engine.ai``."""

    topic: str
    run_id: str | None

    def child(self, segment: str, id: str | None = None) -> StageAI: ...

    def generate_text(
        self,
        model: str,
        prompt: str | Sequence[Mapping[str, Any]],
        *,
        system: str | None = None,
        tools: Sequence[Callable[..., Any] | Mapping[str, Any]] | None = None,
        max_steps: int = ...,
        **options: Any,
    ) -> Any: ...

    def generate_object(
        self,
        model: str,
        prompt: str | Sequence[Mapping[str, Any]],
        *,
        schema: type[Any],
        system: str | None = None,
        **options: Any,
    ) -> Any: ...

    def embed(self, model: str, texts: str | Sequence[str], dimensions: int | None = None, **options: Any) -> Any: ...

    def stream_text(
        self, model: str, prompt: str | Sequence[Mapping[str, Any]], *, system: str | None = None, **options: Any
    ) -> Iterator[str]: ...

    def submit_batch(self, model: str, requests: Sequence[Mapping[str, Any]], **options: Any) -> Any: ...

    def get_batch_results(self, handle: Any, **options: Any) -> Any: ...

    def spent(self) -> Decimal: ...


class AIUsage(Protocol):
    """The AI spend of one stage execution (``django_workflow_engine.ai.usage.StageUsage``)."""

    def add(self, cost: Decimal, tokens: int) -> None: ...

    def metrics(self) -> dict[str, Any]: ...


AIFactory = Callable[["BaseContext"], StageAI]


def check_blob_key(key: str) -> str:
    """Reject keys that are empty, absolute, use backslashes or climb out of the store with ``..``."""
    if not isinstance(key, str) or not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise InvalidBlobKey(f"Invalid blob key {key!r}: use a non-empty relative path like 'reports/summary.json'.")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidBlobKey(f"Invalid blob key {key!r}: empty, '.' and '..' path segments are not allowed.")
    return key


class StageStorage:
    """Blob storage for a stage: ``save``/``load``/``exists``/``delete`` by key, and ``stage_key()`` to build
    keys under a stage's own folder (those are deleted when the stage is rerun)."""

    def __init__(self, blobs: Any, workflow_type: str, run_id: str, stage_id: str):
        self._blobs = blobs
        self._base = f"runs/{workflow_type}/{run_id}"
        self._stage_id = stage_id

    def stage_key(self, stage_id: str | None = None, suffix: str = "output.json") -> str:
        """Key under ``runs/<workflow>/<run>/<stage>/``; default file ``output.json``."""
        check_blob_key(suffix)
        return f"{self._base}/{stage_id or self._stage_id}/{suffix}"

    def save(self, key: str, data: Any) -> None:
        self._blobs.put(check_blob_key(key), data)

    def load(self, key: str) -> Any:
        """Raises ``BlobNotFound`` when nothing is stored under ``key``."""
        return self._blobs.get(check_blob_key(key))

    def exists(self, key: str) -> bool:
        return self._blobs.has(check_blob_key(key))

    def delete(self, key: str) -> None:
        self._blobs.delete(check_blob_key(key))


class BaseContext:
    def __init__(
        self,
        *,
        run_id: str,
        workflow_id: str,
        stage_id: str,
        stage_name: str,
        stage_record_id: str,
        attempt: int,
        config: Any,
        storage: StageStorage,
        log_sink: LogSink,
        ai_factory: AIFactory | None = None,
        run_status: Callable[[], str | None] | None = None,
        children: Children | None = None,
    ):
        self.run_id = run_id
        self.workflow_id = workflow_id
        self.stage_id = stage_id
        self.stage_name = stage_name
        self.stage_record_id = stage_record_id
        self.attempt = attempt
        self.config = config
        self.storage = storage
        self._log_sink = log_sink
        self._ai_factory = ai_factory
        self._run_status = run_status
        self._children = children
        self._status_checked = (-CANCEL_CHECK_SECONDS, False)  # (time.monotonic(), cancelled) of the last read
        self.annotations: list[dict[str, Any]] = []
        # Set by the first ``ai()`` call of this execution and shared by its helpers: the spend the kernel adds
        # to the stage's metrics, and the AI call journal (``ai/journal.py``; opaque to core and the kernel).
        self.ai_usage: AIUsage | None = None
        self.ai_journal: object | None = None

    def log(self, level: str, message: str, **meta: Any) -> None:
        """Write a log line for this stage (``DEBUG``, ``INFO``, ``WARN`` or ``ERROR``); it is stored at once."""
        level = level.upper()
        if level == "WARNING":
            level = "WARN"
        if level not in LOG_LEVELS:
            raise ValueError(f"Unknown log level {level!r}; use one of {', '.join(LOG_LEVELS)}.")
        self._log_sink(level, str(message), meta)

    def annotate(
        self,
        key: str | Mapping[str, Any],
        value: Any = None,
        *,
        actor: Mapping[str, Any] | None = None,
        payload: Any = None,
        idempotency_key: str | None = None,
        emit_event: bool = False,
    ) -> None:
        """Attach a durable key/value annotation to this stage; written with the stage's outcome.

        ``annotate("decision.outcome", "approved")`` or ``annotate({"a.b": 1, "c.d": 2})``. ``None`` values
        are skipped.
        """
        attributes = dict(key) if isinstance(key, Mapping) else {key: value}
        for name, val in attributes.items():
            if val is None:
                continue
            self.annotations.append(
                {
                    "key": name,
                    "value": val,
                    "actor": dict(actor or {}),
                    "payload": payload,
                    "idempotency_key": idempotency_key,
                    "emit_event": emit_event,
                }
            )

    @property
    def cancelled(self) -> bool:
        """Whether the run stopped while this stage runs (cancelled, or failed: its deadline passed, say); the
        stage's result would be discarded. A long stage checks it between steps to stop early. Reads the run's
        status from the database at most once every ``CANCEL_CHECK_SECONDS`` (1 s)."""
        if self._run_status is None:
            return False
        checked_at, cancelled = self._status_checked
        now = time.monotonic()
        if not cancelled and now - checked_at >= CANCEL_CHECK_SECONDS:
            cancelled = self._run_status() in STOPPED_RUN_STATUSES
            self._status_checked = (now, cancelled)
        return cancelled

    def check_cancelled(self) -> None:
        """Raise :class:`~django_workflow_engine.errors.RunNotRunning` if :attr:`cancelled`: the stage stops
        there, and its result (a ghost's) is discarded."""
        if self.cancelled:
            status = self._run_status() if self._run_status is not None else None
            raise RunNotRunning(self.run_id, status or "gone")

    def start_child(self, workflow_id: str, input: Any, *, key: str, config: Mapping[str, Any] | None = None) -> str:
        """Start a run of ``workflow_id`` as a child of this stage; returns its id.

        Idempotent per (this stage, ``key``): an execution of this stage that runs again (a retry, a re-delivered
        job) gets the child it started before, never a second one. Cancelling this run cancels its children.

        Raises:
            WorkflowNotFound, InvalidInput, InvalidConfig: nothing is started.
        """
        if self._children is None:
            raise RuntimeError("This engine cannot start child runs here.")
        if not isinstance(key, str) or not key:
            raise InvalidArgument("key", f"must be a non-empty string naming the child, got {key!r}")
        return self._children.start(workflow_id, input, key, config)

    def children(self) -> list[ChildRun]:
        """The runs this stage started (in start order), each with its status and output."""
        return self._children.list() if self._children is not None else []

    def ai(self) -> StageAI:
        """The AI helper for this stage (topic ``workflow.<run_id>.stage.<stage_id>``), with cost tracking."""
        if self._ai_factory is None:
            raise RuntimeError("No AI helper is configured for this engine.")
        return self._ai_factory(self)


class StageContext(BaseContext):
    """The context passed to a stage's ``execute``.

    Attributes:
        input: the validated input (an instance of the stage's input model, or ``None``).
        config: this stage's config, parsed by its config model with defaults applied (or ``None``).
        workflow_context: ``{stage_id: output}`` of the run's completed stages.
        resume_state: the saved state when a suspended async-batch stage is executed again, else ``None``.
        run_id, workflow_id, stage_id, stage_name, stage_number, stage_record_id, attempt: identity.
        storage: :class:`StageStorage`.
    """

    def __init__(
        self,
        *,
        input: Any,
        workflow_context: Mapping[str, Any],
        stage_number: int,
        resume_state: Any = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.input = input
        self.workflow_context = dict(workflow_context)
        self.stage_number = stage_number
        self.resume_state = resume_state
        self.progress_events: list[dict[str, Any]] = []

    def require(self, stage_id: str) -> Any:
        """Output of a completed stage; raises :class:`MissingStageOutput` naming the available ones."""
        if stage_id not in self.workflow_context:
            raise MissingStageOutput(stage_id, self.workflow_context)
        return self.workflow_context[stage_id]

    def optional(self, stage_id: str, default: Any = None) -> Any:
        """Output of a completed stage, or ``default``."""
        return self.workflow_context.get(stage_id, default)

    def progress(self, progress: float, message: str = "", **details: Any) -> None:
        """Report progress (0-100); recorded as a ``stage:progress`` event with the stage's outcome."""
        self.progress_events.append(
            {
                "stage_id": self.stage_id,
                "progress": float(progress),
                "message": str(message),
                "details": details or None,
            }
        )


class CheckContext(BaseContext):
    """The context passed to ``check_completion(state, ctx)``: identity, config, ``log``, ``annotate``,
    ``storage`` and ``ai()``; no input or workflow context."""


@dataclass(frozen=True)
class ChildRun:
    """A run a stage started with :meth:`BaseContext.start_child`, as it is now."""

    run_id: str
    workflow_id: str
    key: str
    status: str
    output: Any = None

    @property
    def finished(self) -> bool:
        return self.status in STOPPED_RUN_STATUSES

    @property
    def error(self) -> str | None:
        """The failure message of a FAILED child (``None`` otherwise)."""
        if self.status != "FAILED" or not isinstance(self.output, Mapping):
            return None
        error = self.output.get("error")
        return str(error.get("message")) if isinstance(error, Mapping) else None


class Children(Protocol):
    """What ``ctx.start_child`` / ``ctx.children`` use (the kernel gives one to each stage context)."""

    def start(self, workflow_id: str, input: Any, key: str, config: Mapping[str, Any] | None) -> str: ...

    def list(self) -> list[ChildRun]: ...
