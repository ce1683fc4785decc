"""Test helpers for users of the engine (and for its own tests).

``MemoryHarness`` runs workflows in-process on the in-memory adapters, with a fake clock::

    harness = MemoryHarness([my_workflow])
    run_id = harness.start("my-workflow", {"text": "hi"})
    harness.drain()
    assert harness.run(run_id).status == "COMPLETED"
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..kernel import CreateRun, FlushOutbox, Kernel, KernelOptions, PollSuspended, TransitionRun, drain
from ..kernel.records import RunRecord, StageRecord
from ..kernel.runner import DrainResult
from ..kernel.testing import (
    CollectingEventSink,
    DictRegistry,
    FakeClock,
    InMemoryBlobStore,
    InMemoryJobQueue,
    InMemoryPersistence,
    InMemoryStore,
    SystemClock,
)

__all__ = [
    "CollectingEventSink",
    "DictRegistry",
    "FakeClock",
    "InMemoryBlobStore",
    "InMemoryJobQueue",
    "InMemoryPersistence",
    "InMemoryStore",
    "MemoryHarness",
    "SystemClock",
]


class MemoryHarness:
    """A kernel wired to in-memory adapters, a :class:`FakeClock` and a collecting event sink."""

    def __init__(
        self,
        workflows: Iterable[Any] = (),
        *,
        clock: FakeClock | None = None,
        options: KernelOptions | None = None,
        sink: Any = None,
        ai_factory: Any = None,
    ):
        self.store = InMemoryStore()
        self.persistence = InMemoryPersistence(self.store)
        self.jobs = InMemoryJobQueue(self.store)
        self.blobs = InMemoryBlobStore()
        self.clock = clock or FakeClock()
        self.sink = sink or CollectingEventSink()
        self.registry = DictRegistry(workflows)
        self.kernel = Kernel(
            persistence=self.persistence,
            jobs=self.jobs,
            blobs=self.blobs,
            sink=self.sink,
            clock=self.clock,
            registry=self.registry,
            options=options or KernelOptions(retry_base_seconds=0),
            ai_factory=ai_factory,
        )

    def dispatch(self, command: Any) -> Any:
        return self.kernel.dispatch(command)

    def start(self, workflow_id: str, input: Any, **kwargs: Any) -> str:
        """Create and start a run; returns its id."""
        return self.kernel.dispatch(CreateRun(workflow_id=workflow_id, input=input, start=True, **kwargs)).run_id

    def drain(self, **kwargs: Any) -> DrainResult:
        """Execute everything runnable now (claims, jobs, transitions)."""
        return drain(self.kernel, **kwargs)

    def poll(self, max_checks: int = 50) -> Any:
        """Poll due suspended stages and transition the runs that resumed."""
        result = self.kernel.dispatch(PollSuspended(max_checks=max_checks))
        for run_id in result.resumed_run_ids:
            self.kernel.dispatch(TransitionRun(run_id))
        return result

    def flush(self) -> Any:
        return self.kernel.dispatch(FlushOutbox(max_events=10_000))

    def run(self, run_id: str) -> RunRecord:
        run = self.persistence.get_run(run_id)
        assert run is not None, f"no run {run_id}"
        return run

    def stages(self, run_id: str) -> dict[str, StageRecord]:
        return {s.stage_id: s for s in self.persistence.get_stages(run_id)}

    def event_types(self, run_id: str) -> list[str]:
        return [e.event_type for e in self.persistence.get_events(run_id)]
