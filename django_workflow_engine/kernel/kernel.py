"""The kernel: a command dispatcher over injected ports. No timers, no threads, no Django."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from .commands import Command
from .ports import BlobStore, Clock, EventSink, JobQueue, Persistence, WorkflowRegistry
from .validation import check_idempotency_key

logger = logging.getLogger("django_workflow_engine.kernel")

_HANDLERS = {
    "run.create": "run_create",
    "run.claimPending": "run_claim_pending",
    "run.transition": "run_transition",
    "run.cancel": "run_cancel",
    "run.rerunFrom": "run_rerun_from",
    "job.execute": "job_execute",
    "stage.pollSuspended": "stage_poll_suspended",
    "lease.reapStale": "lease_reap_stale",
    "run.reapStuck": "run_reap_stuck",
    "outbox.flush": "outbox_flush",
    "plugin.replayDLQ": "plugin_replay_dlq",
    "idempotency.expire": "idempotency_expire",
}

# Commands whose handlers manage their own transactions (several short ones, user code between them).
_SELF_MANAGED = {
    "job.execute",
    "stage.pollSuspended",
    "outbox.flush",
    "plugin.replayDLQ",
    "lease.reapStale",
    "run.reapStuck",
    "run.claimPending",
    "idempotency.expire",
}


@dataclass(frozen=True)
class KernelOptions:
    """Tunables. Attributes:
    max_attempts: job attempts before a stage fails for good (default 3; stages may override).
    retry_base_seconds: backoff base: retry n waits ``base * 2**(n-1)`` seconds (default 2).
    idempotency_stale_seconds: an in-progress idempotency key older than this may be reclaimed (600; None: never).
    inline_output_bytes: outputs up to this JSON size live in the stage row, larger ones in blob storage.
    max_input_bytes: larger workflow inputs are refused (1 MiB).
    suspend_fallback_seconds: poll interval when a suspended stage gives none (60).
    observer: tracing hooks (``stage(job)`` context manager, ``stage_log(...)``); None: not called at all.
    """

    max_attempts: int = 3
    retry_base_seconds: float = 2.0
    idempotency_stale_seconds: float | None = 600.0
    inline_output_bytes: int = 64 * 1024
    max_input_bytes: int = 1024 * 1024
    suspend_fallback_seconds: float = 60.0
    observer: Any = None


@dataclass
class Deps:
    """Everything a handler may use."""

    persistence: Persistence
    jobs: JobQueue
    blobs: BlobStore
    sink: EventSink
    clock: Clock
    registry: WorkflowRegistry
    options: KernelOptions
    ai_factory: Callable[[Any], Any] | None = None


class Kernel:
    """Dispatches typed commands (:mod:`django_workflow_engine.kernel.commands`) to their handlers.

    Every generic command runs in one transaction that also appends its events to the outbox; idempotent
    commands with a key replay their cached result.
    """

    def __init__(
        self,
        *,
        persistence: Persistence,
        jobs: JobQueue,
        blobs: BlobStore,
        sink: EventSink,
        clock: Clock,
        registry: WorkflowRegistry,
        options: KernelOptions | None = None,
        ai_factory: Callable[[Any], Any] | None = None,
    ):
        self.deps = Deps(persistence, jobs, blobs, sink, clock, registry, options or KernelOptions(), ai_factory)

    @property
    def annotations(self) -> Any:
        """:class:`~django_workflow_engine.kernel.annotations.Annotations`: ``attach`` and ``list``."""
        from .annotations import Annotations

        return Annotations(self.deps)

    @property
    def persistence(self) -> Persistence:
        return self.deps.persistence

    @property
    def jobs(self) -> JobQueue:
        return self.deps.jobs

    @property
    def clock(self) -> Clock:
        return self.deps.clock

    def dispatch(self, command: Command) -> Any:
        """Run ``command`` and return its result dataclass."""
        module = _HANDLERS.get(command.type)
        if module is None:
            raise TypeError(f"Unknown command {command!r}")
        handler = import_module(f".handlers.{module}", __package__)
        key = getattr(command, "idempotency_key", None) if command.idempotent else None
        if key is None:
            return self._run(command, handler, str(uuid.uuid4()))
        check_idempotency_key(key)
        return self._with_idempotency(command, handler, key)

    def _run(self, command: Command, handler: Any, causation_id: str) -> Any:
        if command.type in _SELF_MANAGED:
            return handler.handle(command, self.deps, causation_id)
        persistence = self.deps.persistence
        with persistence.atomic():
            handled = handler.handle(command, self.deps)
            if handled.events:
                persistence.append_events(handled.events, causation_id)
        if handled.after_commit is not None:
            try:
                handled.after_commit()
            except Exception:
                logger.exception("after-commit action of %s failed", command.type)
        return handled.result

    def _with_idempotency(self, command: Command, handler: Any, key: str) -> Any:
        from ..core.errors import IdempotencyInProgressError

        persistence = self.deps.persistence
        claim = persistence.acquire_idempotency_key(
            key, command.type, self.deps.clock.now(), self.deps.options.idempotency_stale_seconds
        )
        result_type = handler.RESULT
        if claim.state == "replay" and self._run_gone(claim.result):
            # The run this key led to was deleted: the key is free again, not a pointer to nothing forever.
            persistence.discard_idempotency_key(key, command.type, claim.result["run_id"])
            claim = persistence.acquire_idempotency_key(
                key, command.type, self.deps.clock.now(), self.deps.options.idempotency_stale_seconds
            )
        if claim.state == "replay":
            return result_type(**claim.result)
        if claim.state == "in_progress":
            raise IdempotencyInProgressError(key, command.type)
        try:
            result = self._run(command, handler, key)
        except BaseException:
            try:
                persistence.release_idempotency_key(key, command.type)
            except Exception:
                logger.exception("could not release idempotency key %s", key)
            raise
        persistence.complete_idempotency_key(key, command.type, _cacheable(result))
        return result

    def _run_gone(self, result: Any) -> bool:
        run_id = result.get("run_id") if isinstance(result, dict) else None
        return isinstance(run_id, str) and self.deps.persistence.get_run(run_id) is None


def _cacheable(result: Any) -> dict[str, Any]:
    data = dataclasses.asdict(result)
    data.pop("continuation", None)  # records of a live lease: meaningless in a replay
    # Stage outputs can be large and are stored with the stage; a replay reads them from there if needed.
    if "output" in data and "outcome" in data:
        data["output"] = None
    return data
