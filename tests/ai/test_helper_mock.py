"""Every helper method through litellm's ``mock_response`` (no network): rows, tokens and exact costs."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import pytest
from django.test import override_settings
from pydantic import BaseModel

from django_workflow_engine.ai import create_ai_helper
from django_workflow_engine.ai.costs import load_litellm
from django_workflow_engine.ai.helper import StructuredOutputError
from django_workflow_engine.models import AICall
from tests.ai.conftest import engine_settings

pytestmark = pytest.mark.django_db

# litellm's mock usage is 10 prompt + 20 completion tokens.
GPT4O_MINI_COST = Decimal("0.0000135")  # 10 x 1.5e-7 + 20 x 6e-7, from litellm's bundled map
FAKE_MODEL_COST = Decimal("0.00005")  # 10 x 1e-6 + 20 x 2e-6, from AI_MODELS


class Person(BaseModel):
    name: str
    age: int


def test_generate_text_records_one_priced_row():
    ai = create_ai_helper("task.t1")
    result = ai.generate_text("gpt-4o-mini", "Say hi", mock_response="hi there")
    assert result.text == "hi there"
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.total_tokens) == (10, 20, 30)
    assert result.cost == GPT4O_MINI_COST
    row = AICall.objects.get()
    assert (row.topic, row.call_type, row.model_key, row.model_id) == ("task.t1", "text", "gpt-4o-mini", "gpt-4o-mini")
    assert (row.prompt, row.response, row.input_tokens, row.output_tokens) == ("Say hi", "hi there", 10, 20)
    assert row.cost == GPT4O_MINI_COST
    assert row.error is None
    assert (row.run_id, row.workflow_id, row.stage_key) == (None, None, None)
    assert row.latency_ms is not None
    assert row.metadata["finish_reason"] == "stop"


def test_a_helper_given_a_run_and_stage_records_their_workflow_and_stage_ids():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from django_workflow_engine.models import WorkflowRun, WorkflowStage

    now = timezone.now()
    run = WorkflowRun.objects.create(
        created_at=now, updated_at=now, workflow_id="digest", workflow_name="Digest", workflow_type="digest", input={}
    )
    stage = WorkflowStage.objects.create(
        created_at=now, updated_at=now, run=run, stage_id="summarize", stage_name="S", stage_number=1, execution_group=1
    )
    with CaptureQueriesContext(connection) as from_objects:
        create_ai_helper("task.digest", run=run, stage=stage).generate_text("gpt-4o-mini", "hi", mock_response="ok")
    by_ids = create_ai_helper("task.digest", run=run.pk, stage=stage.pk)
    with CaptureQueriesContext(connection) as first_by_ids:
        by_ids.generate_text("gpt-4o-mini", "hi", mock_response="ok")
    with CaptureQueriesContext(connection) as second_by_ids:
        by_ids.generate_text("gpt-4o-mini", "hi", mock_response="ok")

    rows = AICall.objects.order_by("id")
    assert [(r.workflow_id, r.stage_key) for r in rows] == [("digest", "summarize")] * 3
    # given ids alone, the helper reads the run's workflow and the stage's id once, for its first call
    assert len(first_by_ids) == len(from_objects) + 2 == len(second_by_ids) + 2
    run.delete()
    assert list(AICall.objects.by_workflow().values_list("workflow_id", "calls")) == [("digest", 3)]


def test_custom_model_is_priced_from_ai_models():
    result = create_ai_helper("task.t2").generate_text("fake-model", "hi", mock_response="ok")
    assert result.cost == FAKE_MODEL_COST
    row = AICall.objects.get()
    assert (row.model_key, row.model_id, row.cost) == ("fake-model", "openai/fake-model", FAKE_MODEL_COST)


def test_unknown_price_is_recorded_as_unpriced_not_zero():
    result = create_ai_helper("task.t3").generate_text("openai/private-model", "hi", mock_response="ok")
    assert result.cost is None
    row = AICall.objects.get()
    assert row.cost is None
    assert row.input_tokens == 10
    assert AICall.objects.unpriced().count() == 1
    assert AICall.objects.totals()["unpriced"] == 1


def test_ai_models_are_not_written_into_litellm_global_state():
    litellm = load_litellm()
    create_ai_helper("task").generate_text("fake-model", "hi", mock_response="ok")
    assert "fake-model" not in litellm.model_cost
    assert "openai/fake-model" not in litellm.model_cost


def test_messages_and_system_prompt():
    ai = create_ai_helper("task")
    messages = [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "3"},
    ]
    ai.generate_text("gpt-4o-mini", messages, system="be brief", mock_response="ok")
    prompt = AICall.objects.get().prompt
    assert '"be brief"' in prompt
    assert '"one"' in prompt
    assert '"3"' in prompt


def test_generate_object_native_structured_output():
    result = create_ai_helper("task").generate_object(
        "gpt-4o-mini", "Who?", schema=Person, mock_response='{"name": "Ada", "age": 36}'
    )
    assert result.object == Person(name="Ada", age=36)
    assert result.cost == GPT4O_MINI_COST
    assert result.attempts == 1
    row = AICall.objects.get()
    assert row.call_type == "object"
    assert row.error is None


def test_generate_object_invalid_twice_names_the_failing_fields():
    with pytest.raises(StructuredOutputError, match=r"does not match Person after 2 attempt\(s\): field 'age'"):
        create_ai_helper("task").generate_object(
            "gpt-4o-mini", "Who?", schema=Person, mock_response='{"name": "Ada", "age": "old"}'
        )
    rows = list(AICall.objects.order_by("id"))
    assert [r.metadata["attempt"] for r in rows] == [1, 2]
    assert all(r.error.startswith("invalid structured output: field 'age'") for r in rows)
    assert all(r.cost == GPT4O_MINI_COST for r in rows)  # both calls were paid for


def test_embed_single_and_many():
    ai = create_ai_helper("task")
    one = ai.embed("text-embedding-3-small", "hello", mock_response=[0.1, 0.2, 0.3])
    assert one.embedding == [0.1, 0.2, 0.3]
    assert one.dimensions == 3
    many = ai.embed("text-embedding-3-small", ["a", "b"], mock_response=[0.5, 0.5])
    assert many.embeddings[0] == [0.5, 0.5]
    assert many.cost == Decimal("0.0000002")  # 10 prompt tokens x 2e-8
    rows = list(AICall.objects.order_by("id"))
    assert [r.call_type for r in rows] == ["embed", "embed"]
    assert rows[0].prompt == "hello"
    assert rows[1].prompt == '["a", "b"]'
    assert rows[1].output_tokens == 0
    assert rows[1].metadata["text_count"] == 2


def test_stream_text_records_usage_once_when_the_stream_ends():
    stream = create_ai_helper("task").stream_text("gpt-4o-mini", "tell me", mock_response="one two three four")
    assert not AICall.objects.exists()  # nothing is sent or recorded before iteration
    chunks = list(stream)
    assert "".join(chunks) == "one two three four" == stream.text
    row = AICall.objects.get()
    assert row.call_type == "stream"
    assert row.response == "one two three four"
    assert row.metadata["completed"] is True
    assert row.metadata["stream_chunks"] >= 2
    assert (row.input_tokens, row.output_tokens) == (stream.usage.input_tokens, stream.usage.output_tokens)
    assert row.input_tokens > 0
    assert row.cost == stream.cost is not None
    list(stream)  # exhausted streams do not record again
    assert AICall.objects.count() == 1


def test_stream_closed_early_records_what_arrived():
    stream = create_ai_helper("task").stream_text("gpt-4o-mini", "tell me", mock_response="one two three four five")
    first = next(stream)
    stream.close()
    row = AICall.objects.get()
    assert row.metadata["completed"] is False
    assert row.response == first


class AddArgs(BaseModel):
    a: int
    b: int


def add(args: AddArgs) -> dict:
    """Add two integers."""
    return {"sum": args.a + args.b}


def test_tools_loop_until_no_more_tool_calls(monkeypatch):
    litellm = load_litellm()
    real = litellm.completion
    seen = []

    def completion(**kwargs):
        # First step: the model calls the tool; second: it answers. mock_tool_calls only on the first call.
        seen.append(kwargs)
        if len(seen) == 1:
            kwargs["mock_tool_calls"] = [
                {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}
            ]
        return real(**kwargs)

    monkeypatch.setattr(litellm, "completion", completion)
    result = create_ai_helper("task.tools").generate_text("gpt-4o-mini", "2+3?", tools=[add], mock_response="5")
    assert result.text == "5"
    assert result.steps == 2
    assert [(c.name, c.arguments, c.result) for c in result.tool_calls] == [("add", AddArgs(a=2, b=3), {"sum": 5})]
    assert result.cost == 2 * GPT4O_MINI_COST
    assert seen[0]["tools"][0]["function"]["name"] == "add"
    assert seen[1]["messages"][-1] == {"role": "tool", "tool_call_id": "call_1", "content": '{"sum": 5}'}
    rows = list(AICall.objects.order_by("id"))
    assert [(r.topic, r.call_type) for r in rows] == [
        ("task.tools", "text"),
        ("task.tools.tool.add", "tool"),
        ("task.tools", "text"),
    ]
    tool_row = rows[1]
    assert (tool_row.cost, tool_row.input_tokens, tool_row.output_tokens) == (Decimal(0), 0, 0)
    assert tool_row.prompt == '{"a": 2, "b": 3}'
    assert tool_row.response == '{"sum": 5}'


def test_tool_functions_must_take_one_pydantic_argument():
    def bad(a: int, b: int) -> int:
        return a + b

    with pytest.raises(TypeError, match="exactly one argument annotated with a pydantic model"):
        create_ai_helper("task").generate_text("gpt-4o-mini", "hi", tools=[bad], mock_response="x")


def test_provider_errors_are_recorded_and_reraised():
    litellm = load_litellm()
    error = litellm.RateLimitError("slow down", llm_provider="openai", model="gpt-4o-mini")
    with pytest.raises(litellm.RateLimitError):
        create_ai_helper("task").generate_text("gpt-4o-mini", "hi", mock_response=error)
    row = AICall.objects.get()
    assert row.error.startswith("RateLimitError")
    assert "slow down" in row.error
    assert (row.input_tokens, row.output_tokens, row.cost) == (0, 0, Decimal(0))


def test_options_reach_litellm_unchanged(monkeypatch):
    litellm = load_litellm()
    seen = {}
    real = litellm.completion

    def completion(**kwargs):
        seen.update(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(litellm, "completion", completion)
    create_ai_helper("task").generate_text(
        "gpt-4o-mini", "hi", temperature=0.2, max_tokens=5, num_retries=3, top_p=0.5, mock_response="ok"
    )
    assert {k: seen[k] for k in ("temperature", "max_tokens", "num_retries", "top_p")} == {
        "temperature": 0.2,
        "max_tokens": 5,
        "num_retries": 3,
        "top_p": 0.5,
    }


@pytest.mark.parametrize(
    ("policy", "expected_prompt", "expected_response"),
    [
        (True, "secret prompt", "secret answer"),
        (False, None, None),
        ("redact", "[redacted: 13 chars, sha256 ", "[redacted: 13 chars, sha256 "),
    ],
)
def test_prompt_logging_policy(policy, expected_prompt, expected_response):
    with override_settings(WORKFLOW_ENGINE=engine_settings(AI_LOG_PROMPTS=policy)):
        create_ai_helper("task").generate_text("gpt-4o-mini", "secret prompt", mock_response="secret answer")
    row = AICall.objects.get()
    if policy == "redact":
        assert row.prompt.startswith(expected_prompt)
        assert row.response.startswith(expected_response)
        assert "secret" not in row.prompt + row.response
    else:
        assert (row.prompt, row.response) == (expected_prompt, expected_response)
    assert row.cost == GPT4O_MINI_COST  # the policy never changes what is counted


def test_child_topics():
    ai = create_ai_helper("task.parent").child("step", "2")
    ai.generate_text("gpt-4o-mini", "hi", mock_response="ok")
    assert AICall.objects.get().topic == "task.parent.step.2"
    assert AICall.objects.for_topic("task.parent").count() == 1


def test_importing_the_package_and_ai_does_not_import_litellm():
    code = (
        "import sys, django_workflow_engine, django_workflow_engine.ai; "
        "from django_workflow_engine.ai import create_ai_helper, preload; "
        "assert 'litellm' not in sys.modules, 'litellm imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
