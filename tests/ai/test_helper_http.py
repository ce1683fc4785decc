"""The real HTTP path: litellm talks to a fake OpenAI-compatible server on 127.0.0.1 started by each test."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from pydantic import BaseModel

from django_workflow_engine.ai import create_ai_helper
from django_workflow_engine.ai.batch import BatchHandle
from django_workflow_engine.ai.costs import load_litellm
from django_workflow_engine.models import AICall

pytestmark = pytest.mark.django_db

# The fake server reports 100 prompt + 50 completion tokens per chat call, 8 per embedding call, and
# 200 + 100 per batch request.
FAKE_CHAT_COST = Decimal("0.0002")  # 100 x 1e-6 + 50 x 2e-6 (AI_MODELS)
GPT4O_MINI_CHAT_COST = Decimal("0.000045")  # 100 x 1.5e-7 + 50 x 6e-7 (litellm's map)
GPT4O_MINI_BATCH_COST = Decimal("0.000045")  # 200 x 7.5e-8 + 100 x 3e-7 (the map's *_batches prices)
FAKE_BATCH_COST = Decimal("0.0002")  # 200 x 5e-7 + 100 x 1e-6 (AI_MODELS batch prices)


class City(BaseModel):
    name: str
    population: int


def test_generate_text_over_http(fake, conn):
    result = create_ai_helper("http").generate_text("fake-model", "hello", **conn)
    assert result.text == "echo: hello"
    assert result.cost == FAKE_CHAT_COST
    assert fake.requests[-1]["body"]["model"] == "fake-model"
    row = AICall.objects.get()
    assert (row.input_tokens, row.output_tokens, row.cost) == (100, 50, FAKE_CHAT_COST)


def test_known_model_priced_from_the_bundled_map(fake, conn):
    result = create_ai_helper("http").generate_text("gpt-4o-mini", "hello", **conn)
    assert result.cost == GPT4O_MINI_CHAT_COST == AICall.objects.get().cost


def test_structured_output_native_response_format(fake, conn, settings):
    settings.WORKFLOW_ENGINE = {
        **settings.WORKFLOW_ENGINE,
        "AI_MODELS": {"fake-model": {"model": "openai/fake-model", "supports_response_schema": True}},
    }
    result = create_ai_helper("http").generate_object("fake-model", "A city", schema=City, **conn)
    assert result.object == City(name="fake", population=7)
    sent = fake.requests[-1]["body"]["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["name"] == "City"
    assert AICall.objects.get().cost is None  # this AI_MODELS entry has no prices: unpriced


def test_structured_output_json_mode_with_one_corrective_retry(fake, conn):
    fake.reply_next(content='{"name": "Paris"}')  # population missing
    fake.reply_next(content='```json\n{"name": "Paris", "population": 2100000}\n```')
    result = create_ai_helper("http").generate_object("fake-model", "A city", schema=City, **conn)
    assert result.object == City(name="Paris", population=2100000)
    assert result.attempts == 2
    assert result.cost == 2 * FAKE_CHAT_COST
    first, second = (r["body"] for r in fake.requests)
    assert first["response_format"] == {"type": "json_object"}
    assert "JSON Schema" in first["messages"][0]["content"]
    assert "field 'population'" in second["messages"][-1]["content"]
    rows = list(AICall.objects.order_by("id"))
    assert rows[0].error == "invalid structured output: field 'population': Field required"
    assert rows[1].error is None


class WeatherArgs(BaseModel):
    city: str


def weather(args: WeatherArgs) -> dict:
    """Current weather for a city."""
    return {"city": args.city, "temp_c": 21}


def test_tool_calls_over_http(fake, conn):
    call = {"id": "call_9", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
    fake.reply_next(tool_calls=[call])
    fake.reply_next(content="It is 21 C in Oslo.")
    result = create_ai_helper("http").generate_text("fake-model", "Weather in Oslo?", tools=[weather], **conn)
    assert result.text == "It is 21 C in Oslo."
    assert result.steps == 2
    assert result.cost == 2 * FAKE_CHAT_COST
    first, second = (r["body"] for r in fake.requests)
    assert first["tools"][0]["function"]["name"] == "weather"
    assert first["tools"][0]["function"]["description"] == "Current weather for a city."
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_9",
        "content": '{"city": "Oslo", "temp_c": 21}',
    }
    tool_row = AICall.objects.get(call_type="tool")
    assert tool_row.topic == "http.tool.weather"
    assert tool_row.cost == 0


def test_streaming_sse(fake, conn):
    stream = create_ai_helper("http").stream_text("fake-model", "stream this please", **conn)
    chunks = list(stream)
    assert len(chunks) > 2
    assert "".join(chunks) == "echo: stream this please"
    assert fake.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    row = AICall.objects.get()
    assert (row.call_type, row.input_tokens, row.output_tokens, row.cost) == ("stream", 100, 50, FAKE_CHAT_COST)
    assert stream.cost == FAKE_CHAT_COST


def test_embeddings_with_dimensions(fake, conn):
    result = create_ai_helper("http").embed("openai/text-embedding-3-small", ["a", "b", "c"], dimensions=4, **conn)
    assert result.dimensions == 4
    assert len(result.embeddings) == 3
    assert fake.requests[-1]["body"]["dimensions"] == 4
    assert result.cost == Decimal("0.00000016")  # 8 tokens x 2e-8
    row = AICall.objects.get()
    assert (row.call_type, row.input_tokens, row.cost) == ("embed", 8, Decimal("0.00000016"))


def test_rate_limit_then_success_is_one_successful_row(fake, conn):
    fake.fail_next(429)
    result = create_ai_helper("http").generate_text("fake-model", "hi", num_retries=2, **conn)
    assert result.text == "echo: hi"
    assert fake.paths() == ["/chat/completions", "/chat/completions"]
    row = AICall.objects.get()
    assert row.error is None
    assert row.cost == FAKE_CHAT_COST


def test_server_error_is_recorded_and_raised(fake, conn):
    litellm = load_litellm()
    fake.fail_next(500, 10)
    with pytest.raises(litellm.InternalServerError):
        create_ai_helper("http").generate_text("fake-model", "hi", max_retries=0, **conn)
    row = AICall.objects.get()
    assert row.error.startswith("InternalServerError")
    assert row.cost == 0


def test_batch_submit_poll_and_record_once(fake, conn):
    ai = create_ai_helper("http.batch")
    fake.batch_status = "in_progress"
    handle = ai.submit_batch("gpt-4o-mini", [{"id": "a", "prompt": "one"}, {"id": "b", "prompt": "two"}], **conn)
    assert fake.paths() == ["/files", "/batches"]
    uploaded = [json.loads(line) for line in fake.files[handle.input_file_id].decode().splitlines()]
    assert [u["custom_id"] for u in uploaded] == ["a", "b"]
    assert uploaded[0]["body"] == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one"}]}
    state = json.loads(json.dumps(handle.to_state()))  # what Suspend stores
    assert BatchHandle.from_state(state) == handle

    pending = ai.get_batch_results(state, **conn)
    assert (pending.status, pending.done, pending.items) == ("in_progress", False, ())
    assert not AICall.objects.exists()

    fake.batch_status = "completed"
    results = ai.get_batch_results(state, **conn)
    assert results.completed
    assert [i.text for i in results.items] == ["batch: a", "batch: b"]
    assert results.cost == 2 * GPT4O_MINI_BATCH_COST
    again = ai.get_batch_results(state, **conn)
    assert again.items == results.items
    rows = list(AICall.objects.order_by("id"))
    assert len(rows) == 2  # recorded once, however often polled
    assert all(r.is_batch and r.call_type == "batch" and r.cost == GPT4O_MINI_BATCH_COST for r in rows)
    assert [r.metadata["request_id"] for r in rows] == ["a", "b"]
    assert {r.metadata["batch_id"] for r in rows} == {handle.batch_id}


def test_batch_with_ai_models_prices_schema_and_failed_items(fake, conn):
    ai = create_ai_helper("http.batch")
    handle = ai.submit_batch("fake-model", [{"id": "ok", "prompt": "x"}, {"id": "fail-1", "prompt": "y"}], **conn)
    results = ai.get_batch_results(handle, **conn)
    items = results.by_id()
    assert items["ok"].cost == FAKE_BATCH_COST
    assert items["ok"].ok
    assert items["fail-1"].error == "bad"
    assert items["fail-1"].cost == 0
    assert AICall.objects.filter(error__isnull=False).count() == 1


def test_batch_requests_need_unique_ids():
    with pytest.raises(ValueError, match="unique non-empty 'id'"):
        create_ai_helper("x").submit_batch("gpt-4o-mini", [{"id": "a", "prompt": "1"}, {"id": "a", "prompt": "2"}])
