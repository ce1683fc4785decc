"""The ``mock_ai`` fixture and ``MockAI``: scripted replies for every AI helper call, recorded as priced rows."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import BaseModel

from django_workflow_engine import (
    CompletionError,
    NotReady,
    Ready,
    Suspend,
    WorkflowBuilder,
    define_async_batch_stage,
    define_stage,
)
from django_workflow_engine.ai import create_ai_helper
from django_workflow_engine.ai.costs import load_litellm
from django_workflow_engine.ai.helper import StructuredOutputError
from django_workflow_engine.models import AICall
from django_workflow_engine.testing import MockAI, MockAIError, active_mock

pytestmark = pytest.mark.django_db

GPT4O_MINI_COST = Decimal("0.0000135")  # litellm's mock usage, 10 x $0.15/M + 20 x $0.60/M
GPT4O_MINI_BATCH_COST = Decimal("0.00000675")  # the same usage at batch prices, 10 x 7.5e-8 + 20 x 3e-7


class Label(BaseModel):
    label: str
    score: int


def test_text_reply_is_recorded_as_a_priced_call(mock_ai):
    mock_ai.text("Bonjour")
    ai = create_ai_helper("task.mock")

    result = ai.generate_text("gpt-4o-mini", "Say hello", system="Answer in French.")

    assert result.text == "Bonjour"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (10, 20)
    assert result.cost == GPT4O_MINI_COST
    row = AICall.objects.get()
    assert (row.call_type, row.model_id, row.response, row.cost) == ("text", "gpt-4o-mini", "Bonjour", GPT4O_MINI_COST)
    [call] = mock_ai.calls
    assert (call.kind, call.model, call.prompt) == ("text", "gpt-4o-mini", "Answer in French.\nSay hello")
    assert call.messages[0] == {"role": "system", "content": "Answer in French."}


def test_object_reply_from_a_dict_a_model_or_json(mock_ai):
    ai = create_ai_helper("task.mock")
    mock_ai.object({"label": "bug", "score": 3}, times=1)
    mock_ai.object(Label(label="question", score=1), times=1)
    mock_ai.object('{"label": "praise", "score": 9}')

    labels = [ai.generate_object("gpt-4o-mini", f"ticket {i}", schema=Label).object for i in range(3)]

    assert labels == [Label(label="bug", score=3), Label(label="question", score=1), Label(label="praise", score=9)]
    assert [c.kind for c in mock_ai.calls] == ["object"] * 3
    assert AICall.objects.filter(call_type="object", cost=GPT4O_MINI_COST).count() == 3


def test_invalid_object_reply_drives_the_corrective_retry(mock_ai):
    mock_ai.object({"label": "bug"}, times=1)  # missing "score": the helper asks again
    mock_ai.object({"label": "bug", "score": 2})
    ai = create_ai_helper("task.mock")

    result = ai.generate_object("gpt-4o-mini", "classify", schema=Label)

    assert result.object == Label(label="bug", score=2)
    assert result.attempts == 2
    retry = mock_ai.calls[1]
    assert "does not match the schema" in retry.prompt
    assert "field 'score'" in retry.prompt

    mock_ai.reset()
    mock_ai.object({"label": "bug"})
    with pytest.raises(StructuredOutputError, match="field 'score': Field required"):
        ai.generate_object("gpt-4o-mini", "classify", schema=Label)


def test_rules_match_by_model_and_prompt_substring_in_order(mock_ai):
    mock_ai.text("from the big model", model="gpt-4o")
    mock_ai.text("about refunds", contains="REFUND")
    mock_ai.text("anything else")
    ai = create_ai_helper("task.mock")

    assert ai.generate_text("gpt-4o", "refund please").text == "from the big model"
    assert ai.generate_text("gpt-4o-mini", "I want a refund").text == "about refunds"
    assert ai.generate_text("gpt-4o-mini", "hello").text == "anything else"
    assert [c.model for c in mock_ai.calls_of("text", model="gpt-4o")] == ["gpt-4o"]


def test_callable_replies_see_the_call(mock_ai):
    mock_ai.text(lambda call: f"{len(call.prompt)} chars to {call.model}")
    ai = create_ai_helper("task.mock")

    assert ai.generate_text("gpt-4o-mini", "12345").text == "5 chars to gpt-4o-mini"


def test_an_exception_reply_is_raised_and_recorded_as_a_failed_call(mock_ai):
    litellm = load_litellm()
    mock_ai.text(litellm.RateLimitError("slow down", llm_provider="openai", model="gpt-4o-mini"), times=1)
    mock_ai.text("after the retry")
    ai = create_ai_helper("task.mock")

    with pytest.raises(litellm.RateLimitError):
        ai.generate_text("gpt-4o-mini", "hi")
    assert ai.generate_text("gpt-4o-mini", "hi").text == "after the retry"

    failed, ok = AICall.objects.order_by("created_at", "id")
    assert failed.error.startswith("RateLimitError")
    assert failed.cost == 0
    assert ok.error is None
    assert ok.cost == GPT4O_MINI_COST


def test_an_unscripted_call_fails_loudly(mock_ai):
    mock_ai.text("only text is scripted")
    ai = create_ai_helper("task.mock")

    with pytest.raises(MockAIError, match=r"no rule for this object call to 'gpt-4o-mini' with prompt 'classify me'"):
        ai.generate_object("gpt-4o-mini", "classify me", schema=Label)
    assert AICall.objects.get().error.startswith("MockAIError")


def test_times_limits_a_rule(mock_ai):
    mock_ai.text("once", times=1)
    ai = create_ai_helper("task.mock")
    ai.generate_text("gpt-4o-mini", "a")
    with pytest.raises(MockAIError):
        ai.generate_text("gpt-4o-mini", "b")


def test_embeddings_get_one_vector_per_text(mock_ai):
    mock_ai.embedding([9.0, 9.0], contains="special")
    mock_ai.embedding(lambda call: [float(len(call.prompt)), 1.0])
    ai = create_ai_helper("task.mock")

    result = ai.embed("text-embedding-3-small", ["abc", "a special one", "hello"])

    assert result.embeddings == [[3.0, 1.0], [9.0, 9.0], [5.0, 1.0]]
    row = AICall.objects.get()
    assert row.call_type == "embed"
    assert row.cost == Decimal("0.0000002")
    assert [c.prompt for c in mock_ai.calls_of("embedding")] == ["abc", "a special one", "hello"]


def test_stream_text_is_answered_too(mock_ai):
    mock_ai.text("Once upon a time.")
    ai = create_ai_helper("task.mock")

    stream = ai.stream_text("gpt-4o-mini", "A story")
    assert "".join(stream) == "Once upon a time."
    assert AICall.objects.get().call_type == "stream"


def test_an_explicit_mock_response_wins(mock_ai):
    ai = create_ai_helper("task.mock")
    assert ai.generate_text("gpt-4o-mini", "hi", mock_response="explicit").text == "explicit"
    assert mock_ai.calls[0].reply == "explicit"


def test_batches_are_answered_by_the_same_rules_at_batch_prices(mock_ai):
    mock_ai.object({"label": "bug", "score": 4}, contains="crash")
    mock_ai.object({"label": "question", "score": 1})
    mock_ai.batches(pending_polls=1)
    ai = create_ai_helper("task.batch")

    handle = ai.submit_batch(
        "gpt-4o-mini", [{"id": "a", "prompt": "it crashes"}, {"id": "b", "prompt": "how?"}], schema=Label
    )
    first = ai.get_batch_results(handle.to_state(), schema=Label)
    assert (first.status, first.done) == ("in_progress", False)
    assert not AICall.objects.exists()

    results = ai.get_batch_results(handle.to_state(), schema=Label)
    assert results.completed
    assert {i.id: i.object for i in results.items} == {
        "a": Label(label="bug", score=4),
        "b": Label(label="question", score=1),
    }
    rows = AICall.objects.filter(is_batch=True)
    assert rows.count() == 2
    assert {r.cost for r in rows} == {GPT4O_MINI_BATCH_COST}
    assert {c.batch_id for c in mock_ai.calls} == {handle.batch_id}


def test_a_scripted_error_fails_one_batch_item(mock_ai):
    mock_ai.text(ValueError("content policy"), contains="bad")
    mock_ai.text("fine")
    ai = create_ai_helper("task.batch")

    handle = ai.submit_batch("gpt-4o-mini", [{"id": "ok", "prompt": "good"}, {"id": "ko", "prompt": "bad"}])
    items = ai.get_batch_results(handle).by_id()

    assert items["ok"].text == "fine"
    assert items["ok"].ok
    assert items["ko"].error == "ValueError: content policy"


def test_a_batch_can_end_failed(mock_ai):
    mock_ai.text("never read").batches(status="expired")
    ai = create_ai_helper("task.batch")
    handle = ai.submit_batch("gpt-4o-mini", [{"id": "x", "prompt": "p"}])
    results = ai.get_batch_results(handle)
    assert (results.status, results.done, results.completed, results.items) == ("expired", True, False, ())


def test_a_batch_dir_lets_another_mock_poll_a_batch_it_did_not_submit(tmp_path):
    """As between a worker that submitted a batch and ``runmaintenance`` polling it: two mocks, one directory."""
    ai = create_ai_helper("task.batch")
    with MockAI(batch_dir=tmp_path).object({"label": "bug", "score": 4}):
        handle = ai.submit_batch("gpt-4o-mini", [{"id": "a", "prompt": "it crashes"}], schema=Label)
    with MockAI().object({"label": "other", "score": 0}), pytest.raises(MockAIError, match="one batch_dir"):
        ai.get_batch_results(handle.to_state(), schema=Label)
    with MockAI(batch_dir=tmp_path):
        results = ai.get_batch_results(handle.to_state(), schema=Label)
    assert results.completed
    assert {i.id: i.object for i in results.items} == {"a": Label(label="bug", score=4)}
    assert AICall.objects.filter(is_batch=True).count() == 1
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial file left behind


# -- in a workflow, on the ORM ----------------------------------------------------------------------------------


class Ticket(BaseModel):
    text: str


class Triage(BaseModel):
    summary: str
    label: str


@define_stage(id="triage", name="Triage", input=Ticket, output=Triage)
def triage(ctx):
    ai = ctx.ai()
    summary = ai.generate_text("gpt-4o-mini", f"Summarize: {ctx.input.text}").text
    label = ai.generate_object("gpt-4o-mini", f"Label: {ctx.input.text}", schema=Label).object
    return Triage(summary=summary, label=label.label)


triage_flow = WorkflowBuilder("mock-ai-triage", "Triage", input=Ticket, output=Triage).pipe(triage).build()


def check_scores(state, ctx):
    results = ctx.ai().get_batch_results(state)
    if not results.done:
        return NotReady()
    if not results.completed:
        return CompletionError(f"batch ended {results.status}")
    return Ready(output={"scores": [item.text for item in results.items]})


@define_async_batch_stage(id="score", name="Score", input=Ticket, check_completion=check_scores)
def score(ctx):
    handle = ctx.ai().submit_batch("gpt-4o-mini", [{"id": w, "prompt": w} for w in ctx.input.text.split()])
    return Suspend(state=handle.to_state(), poll_interval=30)


score_flow = WorkflowBuilder("mock-ai-score", "Score", input=Ticket).pipe(score).build()


def test_a_workflow_run_is_answered_and_costed(mock_ai, workflow_runner):
    mock_ai.text("Printer on fire.")
    mock_ai.object({"label": "hardware", "score": 9})

    run = workflow_runner(triage_flow, {"text": "My printer is on fire"})

    assert (run.status, run.output) == ("COMPLETED", {"summary": "Printer on fire.", "label": "hardware"})
    assert run.total_cost == 2 * GPT4O_MINI_COST
    assert run.total_tokens == 60
    assert [c.kind for c in mock_ai.calls] == ["text", "object"]
    assert "My printer is on fire" in mock_ai.calls[0].prompt
    by_stage = list(AICall.objects.for_run(run).by_stage())
    assert [(r["stage_name"], r["calls"]) for r in by_stage] == [("triage", 2)]


def test_a_batch_stage_resumes_on_the_fake_clock(mock_ai, fake_clock_runner, fake_clock):
    mock_ai.text(lambda call: call.prompt.upper())
    mock_ai.batches(pending_polls=1)

    run = fake_clock_runner(score_flow, {"text": "low high"})
    assert run.status == "RUNNING"
    fake_clock.advance(seconds=30)  # first poll: in progress
    fake_clock_runner.drain()
    run.refresh_from_db()
    assert run.status == "RUNNING"

    fake_clock.advance(seconds=30)
    fake_clock_runner.drain()
    run.refresh_from_db()
    assert (run.status, run.output) == ("COMPLETED", {"scores": ["LOW", "HIGH"]})
    assert run.total_cost == 2 * GPT4O_MINI_BATCH_COST


# -- activation -------------------------------------------------------------------------------------------------


def test_litellm_is_restored_and_mocks_nest():
    litellm = load_litellm()
    original = litellm.completion
    outer = MockAI().text("outer")
    with outer:
        patched = litellm.completion
        assert active_mock() is outer
        with MockAI().text("inner") as inner:
            assert active_mock() is inner
            assert create_ai_helper("t").generate_text("gpt-4o-mini", "x").text == "inner"
        assert litellm.completion is patched
        assert create_ai_helper("t").generate_text("gpt-4o-mini", "x").text == "outer"
    assert litellm.completion is original
    assert not outer.active
    assert active_mock() is None


def test_a_mock_cannot_start_twice():
    mock = MockAI()
    with mock, pytest.raises(MockAIError, match="already active"):
        mock.start()


@pytest.mark.parametrize(
    ("script", "message"),
    [
        (lambda m: m.text(None), r"mock_ai.text\(\) needs a reply"),
        (lambda m: m.object({}, times=0), "times must be a whole number >= 1"),
        (lambda m: m.batches(status="done"), "batch status must be one of completed, failed"),
        (lambda m: m.batches(pending_polls=-1), "pending_polls must be a whole number >= 0"),
        (lambda m: m.calls_of("image"), "kind must be one of text, object, embedding"),
    ],
)
def test_bad_scripts_are_refused(script, message):
    with pytest.raises(ValueError, match=message):
        script(MockAI())


def test_batch_ids_are_unique_across_mocks(mock_ai):
    # Results are recorded once per batch id, and rows outlive a mock (a second demo run on the same database).
    mock_ai.text("ok")
    ai = create_ai_helper("task.batch")
    first = ai.submit_batch("gpt-4o-mini", [{"id": "x", "prompt": "p"}])
    ai.get_batch_results(first)
    with MockAI().text("ok"):
        second = ai.submit_batch("gpt-4o-mini", [{"id": "x", "prompt": "p"}])
        ai.get_batch_results(second)
    assert first.batch_id != second.batch_id
    assert AICall.objects.filter(is_batch=True).count() == 2
