"""The kernel: a command dispatcher over injected ports. No timers, no threads, no Django."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable
from importlib import import_module
from typing import Any

from ..core.context import AIFactory
from .annotations import Annotations
from .commands import Command
from .deps import Deps, KernelOptions
from .ports import BlobStore, Clock, EventSink, JobQueue, Persistence, WorkflowRegistry
from .validation import check_idempotency_key

logger = logging.getLogger("django_workflow_engine.kernel")

_HANDLERS = {
    "run.create": "run_create",
    "run.createMany": "run_create_many",
    "run.claimPending": "run_claim_pending",
    "run.transition": "run_transition",
    "run.cancel": "run_cancel",
    "run.rerunFrom": "run_rerun_from",
    "run.signal": "run_signal",
    "job.execute": ".execution",
    "stage.pollSuspended": "stage_poll_suspended",
    "lease.reapStale": "lease_reap_stale",
    "run.reapStuck": "run_reap_stuck",
    "run.expireDeadlines": "run_expire_deadlines",
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
    "run.expireDeadlines",
    "run.claimPending",
    "idempotency.expire",
    "run.createMany",
}


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
        ai_factory: AIFactory | None = None,
    ):
        self.deps = Deps(persistence, jobs, blobs, sink, clock, registry, options or KernelOptions(), ai_factory)
        self.deps.dispatch = self.dispatch

    @property
    def annotations(self) -> Annotations:
        """:class:`~django_workflow_engine.kernel.annotations.Annotations`: ``attach`` and ``list``."""
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
        handler = import_module(module if module.startswith(".") else f".handlers.{module}", __package__)
        key = getattr(command, "idempotency_key", None) if command.idempotent else None
        if key is None:
            return self._run(command, handler, str(uuid.uuid4()))
        check_idempotency_key(key)
        return self._with_idempotency(command, handler, key)

    def _run(
        self, command: Command, handler: Any, causation_id: str, on_result: Callable[[Any], None] | None = None
    ) -> Any:
        if command.type in _SELF_MANAGED:
            return handler.handle(command, self.deps, causation_id)
        persistence = self.deps.persistence
        with persistence.atomic():
            handled = handler.handle(command, self.deps)
            if handled.events:
                persistence.append_events(handled.events, causation_id)
            if on_result is not None:
                on_result(handled.result)
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
        self_managed = command.type in _SELF_MANAGED

        def complete(result: Any) -> None:
            persistence.complete_idempotency_key(key, command.type, _cacheable(result))

        try:
            # A generic command completes its key in its own transaction: the work and the cached result commit
            # together (no window in which the work is done but the key still says "in progress").
            result = self._run(command, handler, key, on_result=None if self_managed else complete)
        except BaseException:
            try:
                persistence.release_idempotency_key(key, command.type)
            except Exception:
                logger.exception("could not release idempotency key %s", key)
            raise
        if self_managed:
            complete(result)
        return result

    def _run_gone(self, result: Any) -> bool:
        run_id = result.get("run_id") if isinstance(result, dict) else None
        return isinstance(run_id, str) and self.deps.persistence.get_run(run_id) is None


def _cacheable(result: Any) -> dict[str, Any]:
    data = dataclasses.asdict(result)
    data.pop("continuation", None)  # records of a live lease: meaningless in a replay
    data.pop("run", None)  # run.create: the record as written, for the caller; the run id is enough to replay
    # Stage outputs can be large and are stored with the stage; a replay reads them from there if needed.
    if "output" in data and "outcome" in data:
        data["output"] = None
    return data


__all__ = ["Deps", "Kernel", "KernelOptions"]
