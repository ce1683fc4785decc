"""Test helpers for users of the engine (and for its own tests).

Two ways to run a workflow in a test:

* :class:`MemoryHarness` runs it in-process on the kernel's in-memory adapters with a :class:`FakeClock`: no
  database, no Django models, milliseconds per run::

      harness = MemoryHarness([my_workflow])
      run_id = harness.start("my-workflow", {"text": "hi"})
      harness.run_until_idle()
      assert harness.run(run_id).status == "COMPLETED"

* :class:`WorkflowRunner` runs it on the ORM (the test database) through an :class:`~django_workflow_engine.Engine`
  and drains it synchronously with ``engine.run_until_idle()``, returning the refreshed ``WorkflowRun``.

The pytest plugin (:mod:`django_workflow_engine.testing.plugin`, registered through the ``pytest11`` entry point)
wraps both in fixtures. This module imports nothing from Django; :class:`WorkflowRunner` imports the models only
when it is used.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..hosts.drain import DrainResult, drain, poll_suspended, run_until_idle
from ..kernel import (
    CancelRun,
    CreateRun,
    FlushOutbox,
    Kernel,
    KernelOptions,
    RerunFrom,
    SignalRun,
)
from ..kernel.clock import FakeClock, SystemClock
from ..kernel.memory import (
    CollectingEventSink,
    DictRegistry,
    InMemoryBlobStore,
    InMemoryJobQueue,
    InMemoryPersistence,
    InMemoryStore,
)
from ..kernel.records import LogRecord, RunRecord, StageRecord
from .mock_ai import MockAI, MockAIError, MockCall, active_mock

if TYPE_CHECKING:
    from ..core.workflow import Workflow
    from ..facade import Engine
    from ..models import WorkflowRun

__all__ = [
    "CollectingEventSink",
    "DictRegistry",
    "FakeClock",
    "InMemoryBlobStore",
    "InMemoryJobQueue",
    "InMemoryPersistence",
    "InMemoryStore",
    "MemoryHarness",
    "MockAI",
    "MockAIError",
    "MockCall",
    "SystemClock",
    "WorkflowRunner",
    "active_mock",
    "registered_workflows",
]


class MemoryHarness:
    """A kernel wired to in-memory adapters, a :class:`FakeClock` and a collecting event sink.

    Args:
        workflows: the workflows it knows (a list, or a dict of id to workflow).
        clock: the clock (default: a new :class:`FakeClock` at 2026-01-01 UTC).
        options: kernel options (default: ``KernelOptions(retry_base_seconds=0)``, so retries are due at once).
        sink: the event sink fed by :meth:`flush` (default: a :class:`CollectingEventSink`, see ``sink.events``).
        ai_factory: what ``ctx.ai()`` returns, ``factory(ctx)`` (default: none; ``ctx.ai()`` raises).
    """

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
        """Dispatch any kernel command (see ``django_workflow_engine.kernel``) and return its result."""
        return self.kernel.dispatch(command)

    def start(self, workflow_id: str, input: Any, **kwargs: Any) -> str:
        """Create and start a run (``CreateRun(..., start=True)``); returns its id.

        Keyword arguments go to :class:`~django_workflow_engine.kernel.CreateRun` (``config``, ``priority``,
        ``idempotency_key``, ``metadata``, ``max_cost``).
        """
        return self.kernel.dispatch(CreateRun(workflow_id=workflow_id, input=input, start=True, **kwargs)).run_id

    def create(self, workflow_id: str, input: Any, **kwargs: Any) -> str:
        """Create a PENDING run (claimed by the next :meth:`drain`); returns its id."""
        return self.kernel.dispatch(CreateRun(workflow_id=workflow_id, input=input, **kwargs)).run_id

    def drain(self, **kwargs: Any) -> DrainResult:
        """Execute everything runnable now (claims, jobs, transitions); suspended stages are not polled."""
        return drain(self.kernel, **kwargs)

    def poll(self, max_checks: int = 50) -> Any:
        """Poll due suspended stages and transition the runs that resumed."""
        return poll_suspended(self.kernel, max_checks)

    def run_until_idle(self) -> DrainResult:
        """Like ``engine.run_until_idle()``: drain, poll due suspended stages and flush events until nothing is
        runnable at the clock's current time. Advance the clock to make waiting stages and retries due."""
        return run_until_idle(self.kernel, flush_max_events=10_000)

    def flush(self) -> Any:
        """Publish outbox events to the sink (``self.sink.events`` for the default sink)."""
        return self.kernel.dispatch(FlushOutbox(max_events=10_000))

    def cancel(self, run_id: str, reason: str | None = None) -> bool:
        return bool(self.kernel.dispatch(CancelRun(run_id=run_id, reason=reason)).cancelled)

    def rerun_from(self, run_id: str, stage_id: str) -> Any:
        return self.kernel.dispatch(RerunFrom(run_id=run_id, stage_id=stage_id))

    def signal(self, run_id: str, name: str, payload: Any = None, **options: Any) -> Any:
        """Deliver signal ``name`` (options: ``idempotency_key``, ``actor``); returns the ``SignalResult``."""
        return self.kernel.dispatch(SignalRun(run_id=run_id, name=name, payload=payload, **options))

    def run(self, run_id: str) -> RunRecord:
        """The run record (``status``, ``output``, ``total_cost`` ...)."""
        run = self.persistence.get_run(run_id)
        assert run is not None, f"no run {run_id}"
        return run

    def stages(self, run_id: str) -> dict[str, StageRecord]:
        """``{stage_id: stage record}`` of a run."""
        return {s.stage_id: s for s in self.persistence.get_stages(run_id)}

    def logs(self, run_id: str) -> list[LogRecord]:
        """The run's log lines, oldest first (``level``, ``message``, ``metadata``)."""
        return self.persistence.get_logs(run_id)

    def event_types(self, run_id: str) -> list[str]:
        """Types of the run's outbox events, in order (published or not)."""
        return [e.event_type for e in self.persistence.get_events(run_id)]


@contextmanager
def registered_workflows(*workflows: Workflow) -> Iterator[None]:
    """Register workflows in the global registry for the duration of a ``with`` block.

    Workflows that were already registered (by an app's ``workflows.py``, say) are left alone, and only the
    ones this block added are unregistered at the end. Needs Django to be set up.
    """
    from ..registry import registry

    added = []
    try:
        for workflow in workflows:
            if registry.get(workflow.id) is None:
                registry.register(workflow)
                added.append(workflow.id)
            else:
                registry.register(workflow)  # raises if a *different* workflow has this id
        yield
    finally:
        for workflow_id in added:
            registry.unregister(workflow_id)


class WorkflowRunner:
    """Run workflows on the ORM in this process: start a run, drain it, get the refreshed ``WorkflowRun``.

    ``runner(workflow, input, config=..., ...)`` registers ``workflow`` (a :class:`Workflow` or a registered
    id) if needed, calls ``engine.start`` and then ``engine.run_until_idle()``. Workflows it registered are
    unregistered by :meth:`close` (the ``workflow_runner`` fixture does that at teardown). Needs a database:
    in pytest, the ``db`` or ``transactional_db`` fixture.

    Args:
        engine: the engine to use (default: the global ``django_workflow_engine.engine``); pass
            ``Engine(clock=fake_clock)`` to control time.
    """

    def __init__(self, engine: Engine | None = None):
        if engine is None:
            from ..facade import engine as default_engine

            engine = default_engine
        self.engine = engine
        self._added: list[str] = []

    def register(self, workflow: Workflow) -> Workflow:
        """Register ``workflow`` until :meth:`close` (a no-op if this very workflow is registered already)."""
        from ..registry import registry

        if registry.get(workflow.id) is None:
            self._added.append(workflow.id)
        registry.register(workflow)
        return workflow

    def _workflow_id(self, workflow: Workflow | str) -> str:
        if isinstance(workflow, str):
            return workflow
        return self.register(workflow).id

    def start(self, workflow: Workflow | str, input: Any, **options: Any) -> WorkflowRun:
        """``engine.start`` without draining; options as for ``engine.start``."""
        return self.engine.start(self._workflow_id(workflow), input, **options)

    def drain(self, **options: Any) -> DrainResult:
        """``engine.run_until_idle()``: execute everything runnable now."""
        return self.engine.run_until_idle(**options)

    def __call__(self, workflow: Workflow | str, input: Any, **options: Any) -> WorkflowRun:
        """Start a run, drain, and return the refreshed run (COMPLETED, FAILED, or still RUNNING when a stage
        is suspended or a retry is backing off)."""
        run = self.start(workflow, input, **options)
        self.drain()
        run.refresh_from_db()
        return run

    def signal(self, run: WorkflowRun | str, name: str, payload: Any = None, **options: Any) -> WorkflowRun:
        """Deliver signal ``name`` (options as for ``engine.signal``), drain, and return the refreshed run."""
        from ..models import WorkflowRun as Run

        run_id = run if isinstance(run, str) else run.pk
        self.engine.signal(run_id, name, payload, **options)
        self.drain()
        return Run.objects.get(pk=run_id)

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> DrainResult:
        """Move the engine's fake clock forward (a ``timedelta`` or ``timedelta`` keywords: ``days=3``), then drain:
        suspended stages due by then are polled, so a signal stage past its timeout fails or completes with its
        default. Needs an engine with a :class:`FakeClock` (``fake_clock_runner``).

        Raises:
            TypeError: the engine's clock is not a :class:`FakeClock`.
        """
        clock = self.engine.kernel.clock
        if not isinstance(clock, FakeClock):
            raise TypeError(
                f"runner.advance() needs an engine with a FakeClock (use the fake_clock_runner fixture); this "
                f"engine's clock is {type(clock).__name__}."
            )
        clock.advance(delta, **kwargs)
        return self.drain()

    def close(self) -> None:
        """Unregister the workflows this runner registered."""
        from ..registry import registry

        while self._added:
            registry.unregister(self._added.pop())
