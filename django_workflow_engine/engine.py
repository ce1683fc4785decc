"""The engine facade: a kernel wired from settings, and the operations a Django project calls.

``from django_workflow_engine import engine`` gives the process-wide :class:`Engine`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .kernel import (
    CancelRun,
    CreateRun,
    FlushOutbox,
    Kernel,
    KernelOptions,
    PollSuspended,
    RerunFrom,
    TransitionRun,
    drain,
)
from .kernel.runner import DrainResult, JobOutcome

if TYPE_CHECKING:
    from .models import WorkflowRun


class Engine:
    """Start, cancel and rerun workflow runs; drain them in-process.

    The kernel is rebuilt from ``settings.WORKFLOW_ENGINE`` on each use (it is a handful of small objects),
    so ``override_settings`` in tests takes effect immediately.
    """

    def __init__(self, *, using: str = "default", clock: Any = None, registry: Any = None):
        self.using = using
        self._clock = clock
        self._registry = registry

    # -- wiring --------------------------------------------------------------------------------------------

    def options(self) -> KernelOptions:
        from .conf import settings

        return KernelOptions(
            max_attempts=settings.MAX_ATTEMPTS,
            retry_base_seconds=settings.RETRY_BASE_SECONDS,
            idempotency_stale_seconds=settings.IDEMPOTENCY_STALE_SECONDS,
            inline_output_bytes=settings.INLINE_OUTPUT_BYTES,
            max_input_bytes=settings.MAX_INPUT_BYTES,
            observer=self._observer() if settings.TRACING else None,
        )

    def _observer(self) -> Any:
        from .ops.tracing import StageObserver

        return StageObserver(using=self.using)

    @property
    def kernel(self) -> Kernel:
        from .adapters.blobs import StorageBlobStore
        from .adapters.events import SignalEventSink
        from .adapters.job_queue import OrmJobQueue
        from .adapters.persistence import OrmPersistence
        from .conf import settings
        from .kernel.testing import SystemClock
        from .registry import registry

        return Kernel(
            persistence=OrmPersistence(using=self.using),
            jobs=OrmJobQueue(using=self.using, on_enqueue=self._doorbell(), on_withdraw=self._withdraw()),
            blobs=StorageBlobStore(settings.BLOB_STORAGE, prefix=settings.BLOB_PREFIX),
            sink=SignalEventSink(self._plugins()),
            clock=self._clock or SystemClock(),
            registry=self._registry or registry,
            options=self.options(),
            ai_factory=self._ai_factory(),
        )

    def _doorbell(self) -> Callable[[list[str]], None] | None:
        from .conf import settings

        if settings.TRANSPORT != "rq":
            return None
        from .adapters.rq import ring

        return ring

    def _withdraw(self) -> Callable[[list[str]], object] | None:
        from .conf import settings

        if settings.TRANSPORT != "rq":
            return None
        from .adapters.rq import withdraw_later

        return withdraw_later

    def _plugins(self) -> list[Any]:
        from .conf import settings

        if not settings.EVENT_PLUGINS:
            return []
        from django.utils.module_loading import import_string

        return [import_string(p) if isinstance(p, str) else p for p in settings.EVENT_PLUGINS]

    def _ai_factory(self) -> Callable[[Any], Any] | None:
        try:
            from .ai.helper import helper_for_context
        except ImportError:
            return None
        return helper_for_context

    # -- operations ----------------------------------------------------------------------------------------

    def start(
        self,
        workflow_id: str,
        input: Any,
        *,
        config: Mapping[str, Any] | None = None,
        priority: int = 5,
        idempotency_key: str | None = None,
        max_cost: Decimal | float | str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> WorkflowRun:
        """Create a run and enqueue its first group at once.

        Args:
            workflow_id: id of a registered workflow.
            input: workflow input (dict or the workflow's input model instance).
            config: ``{stage_id: {...}}`` overrides merged over each stage's config defaults.
            priority: higher runs are claimed and executed first (default 5).
            idempotency_key: a repeated key returns the run created the first time instead of a new one.
            max_cost: AI spend budget for the run.
            metadata: free JSON stored on the run.

        Raises:
            WorkflowNotFound, InvalidInput, InvalidConfig: nothing is written.
        """
        return self._create(workflow_id, input, config, priority, idempotency_key, max_cost, metadata, start=True)

    def create(
        self,
        workflow_id: str,
        input: Any,
        *,
        config: Mapping[str, Any] | None = None,
        priority: int = 5,
        idempotency_key: str | None = None,
        max_cost: Decimal | float | str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> WorkflowRun:
        """Create a PENDING run, to be claimed by ``runmaintenance`` (or :meth:`run_until_idle`)."""
        return self._create(workflow_id, input, config, priority, idempotency_key, max_cost, metadata, start=False)

    def _create(self, workflow_id, input, config, priority, idempotency_key, max_cost, metadata, *, start):  # type: ignore[no-untyped-def]
        from .conf import settings

        if settings.TRACING:
            from .ops.tracing import traced_create

            return traced_create(
                lambda: self._create_untraced(
                    workflow_id, input, config, priority, idempotency_key, max_cost, metadata, start=start
                ),
                using=self.using,
            )
        return self._create_untraced(
            workflow_id, input, config, priority, idempotency_key, max_cost, metadata, start=start
        )

    def _create_untraced(self, workflow_id, input, config, priority, idempotency_key, max_cost, metadata, *, start):  # type: ignore[no-untyped-def]
        from .models import WorkflowRun

        result = self.kernel.dispatch(
            CreateRun(
                workflow_id=workflow_id,
                input=input,
                config=config,
                priority=priority,
                idempotency_key=idempotency_key,
                max_cost=max_cost,
                metadata=metadata,
                start=start,
            )
        )
        return WorkflowRun.objects.using(self.using).get(pk=result.run_id)

    def cancel(self, run_id: str, reason: str | None = None) -> bool:
        """Cancel a run that is not finished; returns False if it was already COMPLETED/FAILED/CANCELLED."""
        return self.kernel.dispatch(CancelRun(run_id=str(run_id), reason=reason)).cancelled

    def rerun_from(self, run_id: str, stage_id: str, *, idempotency_key: str | None = None) -> WorkflowRun:
        """Run a COMPLETED or FAILED run again from ``stage_id``'s execution group on.

        Raises:
            RunNotFound, InvalidRunState, StageNotFound: nothing is written.
        """
        from .models import WorkflowRun

        self.kernel.dispatch(RerunFrom(run_id=str(run_id), stage_id=stage_id, idempotency_key=idempotency_key))
        return WorkflowRun.objects.using(self.using).get(pk=run_id)

    def annotate(self, run_id: str, attributes: Mapping[str, Any], **options: Any) -> list[Any]:
        """Attach annotations to a run (see :meth:`Annotations.attach`)."""
        return self.kernel.annotations.attach(str(run_id), attributes, **options)

    def annotations(self, run_id: str, **filters: Any) -> list[Any]:
        """List a run's annotations (filters: key, key_prefix, scope, scope_id, actor_id, actor_kind, attempt,
        since, until, limit)."""
        return self.kernel.annotations.list(str(run_id), **filters)

    def transition(self, run_id: str) -> str:
        return self.kernel.dispatch(TransitionRun(run_id=str(run_id))).action

    def run_until_idle(
        self,
        *,
        max_jobs: int | None = None,
        on_stage: Callable[[JobOutcome], Any] | None = None,
        worker_id: str = "in-process",
        flush_events: bool = True,
    ) -> DrainResult:
        """Claim pending runs and execute due jobs in this process until nothing is runnable.

        Due suspended stages are polled too; stages not yet due (and retries in backoff) are left waiting.
        """
        kernel = self.kernel
        total = DrainResult()
        while True:
            result = drain(
                kernel,
                worker_id=worker_id,
                max_jobs=None if max_jobs is None else max_jobs - total.jobs,
                on_job=on_stage,
            )
            for name in ("jobs", "completed", "failed", "retried", "suspended", "claimed_runs"):
                setattr(total, name, getattr(total, name) + getattr(result, name))
            polled = kernel.dispatch(PollSuspended(max_checks=100))
            for run_id in polled.resumed_run_ids:
                kernel.dispatch(TransitionRun(run_id=run_id))
            if flush_events:
                kernel.dispatch(FlushOutbox(max_events=1000))
            if not polled.resumed_run_ids and not polled.failed and result.jobs == 0:
                return total
            if max_jobs is not None and total.jobs >= max_jobs:
                return total

    def run_and_wait(self, workflow_id: str, input: Any, *, timeout: float = 300, **options: Any) -> WorkflowRun:
        """Start a run and block until it is COMPLETED, FAILED or CANCELLED (workers do the work).

        Raises:
            TimeoutError: if the run is still going after ``timeout`` seconds (it keeps running).
        """
        run = self.start(workflow_id, input, **options)
        return self.wait(run.id, timeout=timeout)

    def wait(self, run_id: str, timeout: float = 60, poll_interval: float = 0.2) -> WorkflowRun:
        """Block until the run is COMPLETED, FAILED or CANCELLED (other processes do the work)."""
        from .models import WorkflowRun

        deadline = time.monotonic() + timeout
        while True:
            run = WorkflowRun.objects.using(self.using).get(pk=run_id)
            if run.status in ("COMPLETED", "FAILED", "CANCELLED"):
                return run
            if time.monotonic() >= deadline:
                raise TimeoutError(f"Run {run_id} is still {run.status} after {timeout} s.")
            time.sleep(poll_interval)


engine = Engine()
