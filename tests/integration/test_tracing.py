"""OpenTelemetry traces, checked with the SDK's in-memory exporter: a run started in a traced request continues
that trace in the worker, through the context stored on the run row."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from django_workflow_engine import engine
from django_workflow_engine.models import WorkflowRun
from tests import flows

pytest.importorskip("opentelemetry.sdk")
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

pytestmark = pytest.mark.django_db(transaction=True)

EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))


@pytest.fixture(autouse=True)
def _tracing(settings):
    # The global provider can be set once per process; a proxy tracer resolves to it lazily.
    if trace.get_tracer_provider() is not PROVIDER:
        trace.set_tracer_provider(PROVIDER)
    assert trace.get_tracer_provider() is PROVIDER, "another test installed a tracer provider first"
    settings.WORKFLOW_ENGINE = {"TRACING": True, "RETRY_BASE_SECONDS": 0}
    flows.reset()
    EXPORTER.clear()
    yield
    flows.reset()


def _spans(prefix: str = "") -> list:
    return [s for s in EXPORTER.get_finished_spans() if s.name.startswith(prefix)]


def test_a_run_started_in_a_traced_request_continues_the_trace_in_the_worker():
    request_tracer = trace.get_tracer("tests.web")
    with request_tracer.start_as_current_span("POST /upload") as request_span:
        run = engine.start("diamond", {"value": 3})
    request_ctx = request_span.get_span_context()
    assert trace.get_current_span().get_span_context().is_valid is False  # the request is over

    run.refresh_from_db()
    assert run.trace_context["traceparent"].split("-")[1] == format(request_ctx.trace_id, "032x")

    engine.run_until_idle()  # as a worker would: no current span here

    (start,) = _spans("workflow.start")
    assert start.name == "workflow.start diamond"
    assert start.parent.span_id == request_ctx.span_id
    assert start.attributes["workflow_engine.run_id"] == run.id
    stages = sorted(_spans("workflow.stage"), key=lambda s: s.attributes["workflow_engine.stage_id"])
    assert [s.name for s in stages] == ["workflow.stage a", "workflow.stage b", "workflow.stage c", "workflow.stage d"]
    for span in stages:
        assert span.context.trace_id == request_ctx.trace_id
        assert span.parent.span_id == start.context.span_id
        assert span.attributes["workflow_engine.attempt"] == 1
        assert span.attributes["workflow_engine.outcome"] == "completed"
        assert span.attributes["workflow_engine.workflow_id"] == "diamond"
    events = [(e.name, e.attributes["log.message"], e.attributes["log.value"]) for e in stages[0].events]
    assert events == [("log", "doubling", "3")]


def test_retries_and_failures_are_spans_with_their_attempt_and_outcome():
    flows.FAIL["b"] = "upstream timeout"
    run = engine.start("diamond", {"value": 3})
    engine.run_until_idle()
    assert WorkflowRun.objects.get(pk=run.pk).status == "FAILED"
    attempts = sorted(
        (s.attributes["workflow_engine.attempt"], s.attributes["workflow_engine.outcome"], s.status.status_code.name)
        for s in _spans("workflow.stage b")
    )
    assert attempts == [(1, "retrying", "UNSET"), (2, "retrying", "UNSET"), (3, "failed", "ERROR")]


def test_ai_calls_are_genai_spans_under_their_stage():
    run = engine.start("triple-ai", {"n": 1})
    engine.run_until_idle()
    assert WorkflowRun.objects.get(pk=run.pk).status == "COMPLETED"
    (stage,) = _spans("workflow.stage right")
    calls = _spans("chat ")
    assert len(calls) == 2
    for call in calls:
        assert call.name == "chat gpt-4o-mini"
        assert call.parent.span_id == stage.context.span_id
        assert call.context.trace_id == stage.context.trace_id
        assert call.kind == trace.SpanKind.CLIENT
        assert call.attributes["gen_ai.operation.name"] == "chat"
        assert call.attributes["gen_ai.system"] == "openai"
        assert call.attributes["gen_ai.request.model"] == "gpt-4o-mini"
        assert call.attributes["gen_ai.usage.input_tokens"] > 0
        assert call.attributes["gen_ai.usage.output_tokens"] > 0
        assert call.attributes["workflow_engine.ai.cost_usd"] > 0
        assert call.attributes["workflow_engine.run_id"] == run.id


def test_without_tracing_no_span_no_context_and_no_import(settings):
    settings.WORKFLOW_ENGINE = {}
    token = otel_context.attach(otel_context.Context())
    try:
        with trace.get_tracer("tests.web").start_as_current_span("GET /"):
            run = engine.start("diamond", {"value": 1})
        engine.run_until_idle()
    finally:
        otel_context.detach(token)
    run.refresh_from_db()
    assert run.trace_context is None
    assert [s.name for s in EXPORTER.get_finished_spans()] == ["GET /"]

    # OpenTelemetry blocked (redis-py imports it when it can; the engine must not need it), and the tracing
    # module never loaded, with TRACING off.
    code = (
        "import sys; sys.modules['opentelemetry'] = None; import django; django.setup(); "
        "from django_workflow_engine import engine; engine.kernel; "
        "import django_workflow_engine.hosts.worker, django_workflow_engine.hosts.maintenance; "
        "print(sorted(m for m in sys.modules if m.startswith('django_workflow_engine.ops')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
    )
    assert out.stdout.strip() == "[]", out.stderr
