"""The engine facade: a kernel wired from settings, and the operations a Django project calls.

``from django_workflow_engine import engine`` gives the process-wide :class:`Engine`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .core.errors import WorkflowEngineError, WorkflowNotFound
from .core.workflow import Workflow
from .hosts.drain import DrainResult, run_until_idle
from .hosts.wiring import provide_kernel
from .kernel import (
    CancelRun,
    CreateRun,
    CreateRuns,
    Kernel,
    KernelOptions,
    RerunFrom,
    SignalResult,
    SignalRun,
)
from .kernel.execution import JobOutcome

if TYPE_CHECKING:
    from .core.context import AIFactory
    from .models import WorkflowRun


class Engine:
    """Start, cancel and rerun workflow runs; drain them in-process.

    The kernel is built from ``settings.WORKFLOW_ENGINE`` on first use and kept (building it imports the
    adapters and the event plugins); any settings change Django announces (``setting_changed``: what
    ``override_settings`` and pytest-django's ``settings`` fixture send) drops it, so the next use rebuilds it
    from the new settings.
    """

    def __init__(self, *, using: str = "default", clock: Any = None, registry: Any = None):
        self.using = using
        self._clock = clock
        self._registry = registry
        self._kernel: Kernel | None = None

    def _settings_changed(self, **kwargs: Any) -> None:
        self._kernel = None

    # -- wiring --------------------------------------------------------------------------------------------

    def options(self) -> KernelOptions:
        from .conf import settings

        return KernelOptions(
            max_attempts=settings.MAX_ATTEMPTS,
            retry_base_seconds=settings.RETRY_BASE_SECONDS,
            retry_max_interval_seconds=settings.RETRY_MAX_INTERVAL_SECONDS,
            retry_jitter=settings.RETRY_JITTER,
            stage_timeout_seconds=settings.STAGE_TIMEOUT_SECONDS,
            idempotency_stale_seconds=settings.IDEMPOTENCY_STALE_SECONDS,
            inline_output_bytes=settings.INLINE_OUTPUT_BYTES,
            max_input_bytes=settings.MAX_INPUT_BYTES,
            max_map_items=settings.MAX_MAP_ITEMS,
            observer=self._observer() if settings.TRACING else None,
        )

    def _observer(self) -> Any:
        from .ops.tracing import StageObserver

        return StageObserver(using=self.using)

    @property
    def kernel(self) -> Kernel:
        """The kernel wired from the current settings (built once, rebuilt after a settings change)."""
        kernel = self._kernel
        if kernel is None:
            from django.core.signals import setting_changed

            # Connected here, not in __init__: this module must import without Django. Weak (the default): a
            # garbage-collected engine disconnects itself; connecting the same receiver again is a no-op.
            setting_changed.connect(self._settings_changed)
            kernel = self._kernel = self._build_kernel()
        return kernel

    def _build_kernel(self) -> Kernel:
        from .adapters.blobs import StorageBlobStore
        from .adapters.events import SignalEventSink
        from .adapters.job_queue import OrmJobQueue
        from .adapters.persistence import OrmPersistence
        from .conf import settings
        from .kernel.clock import SystemClock
        from .registry import registry

        return Kernel(
            persistence=OrmPersistence(using=self.using),
            jobs=OrmJobQueue(self.using, self._doorbell(), self._withdraw(), notify_due=self._notify_due()),
            blobs=StorageBlobStore(settings.BLOB_STORAGE, prefix=settings.BLOB_PREFIX),
            sink=SignalEventSink(self._plugins()),
            clock=self._clock or SystemClock(),
            registry=self._registry or registry,
            options=self.options(),
            ai_factory=self._ai_factory(),
        )

    def _doorbell(self) -> Callable[..., object] | None:
        from .conf import settings

        if settings.TRANSPORT != "rq":
            return None
        from .adapters import rq

        # Looked up at each ring, not bound when the kept kernel was built (so it can be wrapped or patched).
        return lambda ids, **kwargs: rq.ring(ids, **kwargs)

    def _notify_due(self) -> bool:
        """The database transport's doorbell: PostgreSQL notifies idle workers (:mod:`.adapters.notify`)."""
        from .adapters.notify import supported
        from .conf import settings

        return settings.TRANSPORT == "database" and supported(self.using)

    def _withdraw(self) -> Callable[[list[str]], object] | None:
        from .conf import settings

        if settings.TRANSPORT != "rq":
            return None
        from .adapters import rq

        return lambda ids: rq.withdraw_later(ids)

    def _plugins(self) -> list[Any]:
        from .conf import settings

        if not settings.EVENT_PLUGINS:
            return []
        from django.utils.module_loading import import_string

        return [import_string(p) if isinstance(p, str) else p for p in settings.EVENT_PLUGINS]

    def _ai_factory(self) -> AIFactory | None:
        try:
            from .ai.helper import helper_for_context
        except ImportError:
            return None
        return helper_for_context

    # -- operations ----------------------------------------------------------------------------------------

    def start(
        self,
        workflow_id: str | Workflow,
        input: Any,
        *,
        config: Mapping[str, Any] | None = None,
        priority: int = 5,
        idempotency_key: str | None = None,
        max_cost: Decimal | float | str | None = None,
        metadata: dict[str, Any] | None = None,
        deadline: datetime | timedelta | float | None = None,
        start_at: datetime | None = None,
        delay: float | timedelta | None = None,
    ) -> WorkflowRun:
        """Create a run and enqueue its first group at once (or, with ``start_at`` / ``delay``, due then).

        Args:
            workflow_id: a registered workflow, or its id.
            input: workflow input (dict or the workflow's input model instance).
            config: ``{stage_id: {...}}`` overrides merged over each stage's config defaults.
            priority: higher runs are claimed and executed first (default 5).
            idempotency_key: a repeated key returns the run created the first time instead of a new one.
            max_cost: AI spend budget for the run.
            metadata: free JSON stored on the run.
            deadline: an aware datetime, or a duration from now (seconds or ``timedelta``): a run not finished
                by then fails with "deadline exceeded". Default: the workflow's ``timeout``, if any.
            start_at: a delayed start: a timezone-aware time at which the first group becomes due. The run is
                created now (input validated, idempotency applied) and shows as scheduled until then.
            delay: the same as seconds (or a ``timedelta``) from now. Give ``start_at`` or ``delay``, not both;
                a time not in the future starts the run at once.

        Raises:
            WorkflowNotFound, InvalidInput, InvalidConfig, InvalidDeadline, InvalidStartTime: nothing is written.
        """
        workflow_id = self._workflow_id(workflow_id)
        when = (start_at, delay) if start_at is not None or delay is not None else None
        return self._create(
            workflow_id,
            input,
            config,
            priority,
            idempotency_key,
            max_cost,
            metadata,
            start=True,
            deadline=deadline,
            when=when,
        )

    def create(
        self,
        workflow_id: str | Workflow,
        input: Any,
        *,
        config: Mapping[str, Any] | None = None,
        priority: int = 5,
        idempotency_key: str | None = None,
        max_cost: Decimal | float | str | None = None,
        metadata: dict[str, Any] | None = None,
        deadline: datetime | timedelta | float | None = None,
    ) -> WorkflowRun:
        """Create a PENDING run, to be claimed by ``runmaintenance`` (or :meth:`run_until_idle`)."""
        workflow_id = self._workflow_id(workflow_id)
        return self._create(
            workflow_id, input, config, priority, idempotency_key, max_cost, metadata, start=False, deadline=deadline
        )

    def run_schedule_now(self, name: str) -> WorkflowRun:
        """Start a run of the ``WorkflowSchedule`` called ``name`` now, outside its timing ("Run now" in the
        admin): its input, config and priority, metadata ``{"schedule": name, "manual": <time>}``. Its next
        fire time is unchanged.

        Raises:
            WorkflowEngineError: no schedule of that name; WorkflowNotFound, InvalidInput, InvalidConfig as
                :meth:`start` (nothing is written).
        """
        from .hosts.schedules import fire
        from .models import WorkflowSchedule

        schedule = WorkflowSchedule.objects.using(self.using).filter(name=name).first()
        if schedule is None:
            raise WorkflowEngineError(f"schedule: no schedule named {name!r}.")
        result = fire(self.kernel, schedule, None, manual_at=self.kernel.clock.now())
        WorkflowSchedule.objects.using(self.using).filter(pk=schedule.pk).update(last_run_id=result.run_id)
        return self._run_model(result.run_id, result.run)

    def _workflow_id(self, workflow: str | Workflow) -> str:
        """The id of ``workflow``, which must be the object registered under it (the one workers run)."""
        if not isinstance(workflow, Workflow):
            return workflow
        registry = self.kernel.deps.registry
        registered = registry.get(workflow.id)
        if registered is None:
            raise WorkflowNotFound(workflow.id, registry.ids())
        if registered is not workflow:
            raise WorkflowEngineError(
                f"workflow: this Workflow object is not the one registered as {workflow.id!r} (two definitions "
                "share the id); pass the registered one, or its id."
            )
        return workflow.id

    def _create(
        self, workflow_id, input, config, priority, idempotency_key, max_cost, metadata, *, start, deadline, when=None
    ):
        from .conf import settings

        args = (workflow_id, input, config, priority, idempotency_key, max_cost, metadata)
        if settings.TRACING:
            from .ops.tracing import traced_create

            return traced_create(
                lambda: self._create_untraced(*args, start=start, deadline=deadline, when=when), using=self.using
            )
        return self._create_untraced(*args, start=start, deadline=deadline, when=when)

    def _create_untraced(
        self, workflow_id, input, config, priority, idempotency_key, max_cost, metadata, *, start, deadline, when=None
    ):
        start_at, delay = when or (None, None)
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
                deadline=deadline,
                start_at=start_at,
                delay=delay,
            )
        )
        return self._run_model(result.run_id, result.run)

    def _run_model(self, run_id: str, record: Any) -> WorkflowRun:
        """The ``WorkflowRun`` of ``record`` as the command wrote it, without reading it back; read when there
        is no record (an idempotent replay). ``event_seq`` is left unloaded (read if ever accessed): the outbox
        counter moved when the command appended its events, after the record was made."""
        from .models import WorkflowRun

        if record is None:
            return WorkflowRun.objects.using(self.using).get(pk=run_id)
        names = _run_model_fields()
        return WorkflowRun.from_db(self.using, names, [getattr(record, name) for name in names])

    def start_many(
        self,
        workflow_id: str | Workflow,
        inputs: Iterable[Any],
        *,
        config: Mapping[str, Any] | None = None,
        priority: int = 5,
        idempotency_keys: Sequence[str | None] | None = None,
        batch_size: int = 500,
    ) -> list[WorkflowRun]:
        """Start one run per input, like :meth:`start` called for each, at a fraction of the cost.

        Every input is validated before anything is written. Runs are then written ``batch_size`` at a time:
        one transaction per batch (on PostgreSQL one statement), and one doorbell ring for its jobs. A batch
        that fails rolls back alone; the batches before it stay started.

        Args:
            workflow_id: a registered workflow, or its id.
            inputs: workflow inputs (dicts or the workflow's input model instances).
            config: ``{stage_id: {...}}`` overrides, the same for every run.
            priority: the same for every run (default 5).
            idempotency_keys: one per input, ``None`` for an input without; an input whose key started a run
                before (here or with :meth:`start`) returns that run instead of a new one. Unique in one call.
            batch_size: runs per transaction (default 500).

        Returns:
            The runs, in input order.

        Raises:
            InvalidInput: an input failed validation; the message starts with ``inputs[<index>]:``, the error's
                ``index`` is that index. Nothing is written.
            WorkflowNotFound, InvalidConfig, WorkflowEngineError (bad priority, batch_size or idempotency_keys):
                nothing is written.
        """
        result = self.kernel.dispatch(
            CreateRuns(
                workflow_id=self._workflow_id(workflow_id),
                inputs=tuple(inputs),
                config=config,
                priority=priority,
                idempotency_keys=None if idempotency_keys is None else tuple(idempotency_keys),
                batch_size=batch_size,
            )
        )
        return [self._run_model(run_id, record) for run_id, record in zip(result.run_ids, result.runs, strict=True)]

    def cancel(self, run_id: str, reason: str | None = None) -> bool:
        """Cancel a run that is not finished; returns False if it was already COMPLETED/FAILED/CANCELLED."""
        return self.kernel.dispatch(CancelRun(run_id=str(run_id), reason=reason)).cancelled

    def rerun_from(
        self, run_id: str, stage_id: str, *, idempotency_key: str | None = None, actor: str | None = None
    ) -> WorkflowRun:
        """Run a COMPLETED or FAILED run again from ``stage_id``'s execution group on.

        The stage records it replaces are kept as the run's history (``WorkflowStage.objects.superseded()``),
        with their errors, logs and AI calls; the run's cost keeps what every generation spent.

        Args:
            run_id: the run.
            stage_id: the first stage to run again (its whole execution group and every later one run again).
            idempotency_key: a retried call with the same key reruns once.
            actor: who asked (a username, shown in the run's history); at most 200 characters.

        Raises:
            RunNotFound, InvalidRunState, StageNotFound: nothing is written.
        """
        result = self.kernel.dispatch(
            RerunFrom(run_id=str(run_id), stage_id=stage_id, idempotency_key=idempotency_key, actor=actor)
        )
        return self._run_model(result.run_id, result.run)

    def signal(
        self,
        run_id: str,
        name: str,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
        actor: str | None = None,
    ) -> SignalResult:
        """Deliver signal ``name`` to a run (a person's answer, a webhook's news).

        The payload is validated by the output model of the stage waiting for ``name``. If that stage waits
        now, it completes with the payload and the run goes on at once (its next stages ring the doorbell on
        commit); if the run has not reached it yet, the signal is kept and the stage completes as soon as it
        would wait.

        Args:
            idempotency_key: a second signal with the same key (on the same run) does nothing and returns the
                first one's result (``replayed=True``).
            actor: who sent it (a username, a system), at most 200 characters; shown in the admin.

        Raises:
            RunNotFound; SignalNotExpected (no stage waits for ``name``, or its stage already received one);
            InvalidRunState (the run is finished or cancelled); InvalidInput (naming the payload field). Nothing
            is written.
        """
        return self.kernel.dispatch(
            SignalRun(run_id=str(run_id), name=name, payload=payload, idempotency_key=idempotency_key, actor=actor)
        )

    def annotate(self, run_id: str, attributes: Mapping[str, Any], **options: Any) -> list[Any]:
        """Attach annotations to a run (see :meth:`Annotations.attach`)."""
        return self.kernel.annotations.attach(str(run_id), attributes, **options)

    def annotations(self, run_id: str, **filters: Any) -> list[Any]:
        """List a run's annotations (filters: key, key_prefix, scope, scope_id, actor_id, actor_kind, attempt,
        since, until, limit)."""
        return self.kernel.annotations.list(str(run_id), **filters)

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
        from .adapters.sqlite import is_busy

        return run_until_idle(
            self.kernel,
            max_jobs=max_jobs,
            on_job=on_stage,
            worker_id=worker_id,
            flush_max_events=1000 if flush_events else None,
            release_on=is_busy,
        )

    def run_and_wait(self, workflow_id: str, input: Any, *, timeout: float = 300, **options: Any) -> WorkflowRun:
        """Start a run and block until it is COMPLETED, FAILED or CANCELLED (workers do the work).

        Raises:
            TimeoutError: if the run is still going after ``timeout`` seconds (it keeps running).
        """
        run = self.start(workflow_id, input, **options)
        return self.wait(run.id, timeout=timeout)

    def wait(
        self,
        run_id: str,
        timeout: float = 60,
        poll_interval: float = 0.2,
        *,
        on_poll: Callable[[WorkflowRun], Any] | None = None,
    ) -> WorkflowRun:
        """Block until the run is COMPLETED, FAILED or CANCELLED (other processes do the work).

        Args:
            run_id: the run to wait for.
            timeout: seconds to wait at most.
            poll_interval: seconds between two reads of the run.
            on_poll: called with the freshly read run at every poll, the last one included (to show progress).

        Raises:
            TimeoutError: if the run is still going after ``timeout`` seconds (it keeps running).
        """
        from .models import WorkflowRun
        from .models.status import TERMINAL

        deadline = time.monotonic() + timeout
        while True:
            run = WorkflowRun.objects.using(self.using).get(pk=run_id)
            if on_poll is not None:
                on_poll(run)
            if run.status in TERMINAL:
                return run
            if time.monotonic() >= deadline:
                raise TimeoutError(f"Run {run_id} is still {run.status} after {timeout} s.")
            time.sleep(poll_interval)


def _run_model_fields() -> list[str]:
    from dataclasses import fields

    from .kernel.records import RunRecord

    global _RUN_MODEL_FIELDS
    if _RUN_MODEL_FIELDS is None:
        from .models import WorkflowRun

        names = {f.name for f in fields(RunRecord)}
        # In the model's field order: from_db() passes positional values when every field is there.
        _RUN_MODEL_FIELDS = [f.attname for f in WorkflowRun._meta.concrete_fields if f.attname in names]
    return _RUN_MODEL_FIELDS


_RUN_MODEL_FIELDS: list[str] | None = None

engine = Engine()
# Hosts given no kernel (the RQ job function, serverless handlers) run on this engine's.
provide_kernel(lambda: engine.kernel)
