"""OpenTelemetry traces (the ``otel`` extra, ``WORKFLOW_ENGINE["TRACING"] = True``).

- ``workflow.start <workflow>``: a span where a run is created, a child of whatever span is current there (a
  traced Django request, say). Its context (W3C ``traceparent``) is stored on the run row
  (``WorkflowRun.trace_context``), in the transaction that creates the run, so a worker on another machine
  continues the same trace.
- ``workflow.stage <stage>``: one span per stage execution (a delivery of its job), a child of the start span,
  with the attempt, worker, outcome and duration; the stage's ``ctx.log`` lines are span events.
- ``chat <model>`` / ``embeddings <model>``: one span per AI call of the stage, with the GenAI semantic
  conventions (``gen_ai.system``, ``gen_ai.request.model``, ``gen_ai.usage.input_tokens``,
  ``gen_ai.usage.output_tokens``) and the cost (``workflow_engine.ai.cost_usd``).

Spans go to the tracer provider the project configured (``opentelemetry.trace.set_tracer_provider``); this
module only creates them. It is imported only when ``TRACING`` is on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACER_NAME = "django_workflow_engine"
_propagator = TraceContextTextMapPropagator()
# Stage spans in flight, by (run id, stage id): an AI call recorded on a helper thread (async stages) finds
# its parent here rather than in the thread's (empty) current context.
_active: dict[tuple[str, str], trace.Span] = {}
_lock = threading.Lock()


def tracer() -> trace.Tracer:
    from ..core.version import VERSION

    return trace.get_tracer(TRACER_NAME, VERSION)


def traced_create(create: Callable[[], Any], *, using: str = "default") -> Any:
    """Create a run inside a ``workflow.start`` span and store the span's context on the run row, in one
    transaction (a worker woken by the commit already sees the context)."""
    from django.db import transaction

    from ..models import WorkflowRun

    with tracer().start_as_current_span("workflow.start", kind=trace.SpanKind.PRODUCER) as span:
        with transaction.atomic(using=using):
            run = create()
            carrier: dict[str, str] = {}
            _propagator.inject(carrier)
            # A repeated idempotency key returns the run made the first time: its trace stays the first one.
            WorkflowRun.objects.using(using).filter(pk=run.pk, trace_context__isnull=True).update(trace_context=carrier)
        span.update_name(f"workflow.start {run.workflow_id}")
        span.set_attribute("workflow_engine.run_id", run.id)
        span.set_attribute("workflow_engine.workflow_id", run.workflow_id)
    run.refresh_from_db(fields=["trace_context"])
    return run


class StageObserver:
    """The kernel's tracing hooks (``KernelOptions.observer``)."""

    def __init__(self, using: str = "default") -> None:
        self.using = using

    def _parent(self, run_id: str) -> Any:
        from ..models import WorkflowRun

        carrier = WorkflowRun.objects.using(self.using).filter(pk=run_id).values_list("trace_context", flat=True)
        stored = carrier.first()
        return _propagator.extract(stored) if stored else None

    @contextmanager
    def stage(self, job: Any) -> Iterator[Callable[[Any], None]]:
        """A ``workflow.stage`` span around one execution of ``job``; call the yielded function with the
        ``JobOutcome``."""
        attributes = {
            "workflow_engine.run_id": job.run_id,
            "workflow_engine.workflow_id": job.workflow_id,
            "workflow_engine.stage_id": job.stage_id,
            "workflow_engine.job_id": job.id,
            "workflow_engine.attempt": job.attempt,
        }
        if job.worker_id:
            attributes["workflow_engine.worker_id"] = job.worker_id
        span = tracer().start_span(
            f"workflow.stage {job.stage_id}",
            context=self._parent(job.run_id),
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
        )
        key = (job.run_id, job.stage_id)
        with _lock:
            _active[key] = span

        def record(outcome: Any) -> None:
            span.set_attribute("workflow_engine.outcome", outcome.outcome)
            span.set_attribute("workflow_engine.duration_ms", outcome.duration_ms)
            if outcome.outcome == "failed":
                span.set_status(Status(StatusCode.ERROR, outcome.error or "failed"))

        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield record
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            raise
        finally:
            otel_context.detach(token)
            with _lock:
                _active.pop(key, None)
            span.end()

    def stage_log(self, run_id: str, stage_id: str, level: str, message: str, meta: dict[str, Any]) -> None:
        span = _active.get((run_id, stage_id))
        if span is not None:
            attributes = {"log.severity": level, "log.message": message}
            attributes.update({f"log.{k}": str(v) for k, v in (meta or {}).items()})
            span.add_event("log", attributes)


_OPERATIONS = {"embed": "embeddings"}


def _ai_call_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    from ..conf import settings

    if not created or not settings.TRACING:
        return
    parent = _active.get((str(instance.run_id), instance.stage_key or "")) if instance.run_id else None
    if parent is None:
        current = trace.get_current_span()
        if not current.get_span_context().is_valid:
            return  # an AI call outside any traced stage or request
        parent = current
    end = instance.created_at
    start = end - timedelta(milliseconds=instance.latency_ms or 0)
    operation = _OPERATIONS.get(instance.call_type, "chat")
    model_key = instance.model_key or ""
    attributes = {
        "gen_ai.operation.name": operation,
        "gen_ai.system": model_key.split("/", 1)[0] if "/" in model_key else _system(instance.model_id),
        "gen_ai.request.model": instance.model_id,
        "gen_ai.usage.input_tokens": instance.input_tokens,
        "gen_ai.usage.output_tokens": instance.output_tokens,
        "workflow_engine.ai.call_type": instance.call_type,
    }
    if instance.cost is not None:
        attributes["workflow_engine.ai.cost_usd"] = float(instance.cost)
    if instance.run_id:
        attributes["workflow_engine.run_id"] = str(instance.run_id)
    span = tracer().start_span(
        f"{operation} {instance.model_id}",
        context=trace.set_span_in_context(parent),
        kind=trace.SpanKind.CLIENT,
        attributes=attributes,
        start_time=int(start.timestamp() * 1e9),
    )
    if instance.error:
        span.set_status(Status(StatusCode.ERROR, instance.error[:200]))
    span.end(end_time=int(end.timestamp() * 1e9))


def _system(model_id: str) -> str:
    """The provider, for ``gen_ai.system``, from a bare model name."""
    name = (model_id or "").lower()
    for prefix, system in (("gpt", "openai"), ("o1", "openai"), ("o3", "openai"), ("claude", "anthropic")):
        if name.startswith(prefix):
            return system
    if name.startswith("gemini"):
        return "gemini"
    return "unknown"


def connect() -> None:
    """Connect the AI-call receiver (idempotent; done on import)."""
    from django.db.models.signals import post_save

    from ..models import AICall

    post_save.connect(_ai_call_saved, sender=AICall, dispatch_uid="django_workflow_engine.tracing.ai_call")


connect()
