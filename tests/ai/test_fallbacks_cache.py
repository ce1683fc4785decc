"""Fallback models and the response cache of the AI helper, recorded and priced call by call."""

from __future__ import annotations

import io
import json
import time
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.test import override_settings

from django_workflow_engine import create_ai_helper, engine
from django_workflow_engine.ai.costs import load_litellm
from django_workflow_engine.ai.results import StructuredOutputError
from django_workflow_engine.core.errors import InvalidArgument
from django_workflow_engine.models import AICall, AIResponseCache
from tests.ai import flows_ai
from tests.ai.conftest import engine_settings

pytestmark = pytest.mark.django_db

MINI = Decimal("0.0000135")  # a gpt-4o-mini mock call: 10 x 1.5e-7 + 20 x 6e-7
FOUR_O = Decimal("0.000225")  # a gpt-4o mock call: 10 x 2.5e-6 + 20 x 1e-5


def provider_error(name: str):
    litellm = load_litellm()
    cls = getattr(litellm, name)
    if name in ("Timeout", "APIConnectionError"):
        return cls(message="no answer", llm_provider="openai", model="gpt-4o")
    return cls("provider trouble", llm_provider="openai", model="gpt-4o")


# -- fallbacks ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error", ["RateLimitError", "Timeout", "InternalServerError", "ServiceUnavailableError", "APIConnectionError"]
)
def test_the_next_model_answers_when_the_first_is_limited_times_out_or_fails(mock_ai, error):
    mock_ai.text(provider_error(error), model="gpt-4o")
    mock_ai.text("from mini", model="gpt-4o-mini")
    result = create_ai_helper("task").generate_text("gpt-4o", "hi", fallbacks=["gpt-4o-mini"])
    assert (result.text, result.model, result.cost) == ("from mini", "gpt-4o-mini", MINI)
    failed, answered = AICall.objects.order_by("created_at", "id")
    assert (failed.model_key, failed.cost, failed.error.split(":")[0]) == ("gpt-4o", 0, error)
    # The answer is recorded under the model that gave it, at that model's price.
    assert (answered.model_key, answered.model_id, answered.cost, answered.error) == (
        "gpt-4o-mini",
        "gpt-4o-mini",
        MINI,
        None,
    )
    assert answered.metadata["fallback_for"] == "gpt-4o"


def test_a_bad_request_is_not_sent_to_the_fallbacks(mock_ai):
    litellm = load_litellm()
    mock_ai.text(litellm.BadRequestError("prompt too long", model="gpt-4o", llm_provider="openai"), model="gpt-4o")
    mock_ai.text("never", model="gpt-4o-mini")
    with pytest.raises(litellm.BadRequestError):
        create_ai_helper("task").generate_text("gpt-4o", "hi", fallbacks=["gpt-4o-mini"])
    assert list(AICall.objects.values_list("model_key", flat=True)) == ["gpt-4o"]


def test_when_every_model_fails_the_last_error_is_raised_and_every_attempt_recorded(mock_ai):
    litellm = load_litellm()
    mock_ai.text(provider_error("InternalServerError"), model="gpt-4o")
    mock_ai.text(provider_error("Timeout"), model="gpt-4o-mini")
    with pytest.raises(litellm.Timeout):
        create_ai_helper("task").generate_text("gpt-4o", "hi", fallbacks=["gpt-4o-mini"])
    assert list(AICall.objects.order_by("created_at", "id").values_list("model_key", flat=True)) == [
        "gpt-4o",
        "gpt-4o-mini",
    ]


def test_a_model_over_its_rate_limit_is_skipped_for_its_fallback_without_waiting(mock_ai):
    mock_ai.text("from 4o", model="gpt-4o")
    mock_ai.text("from mini", model="gpt-4o-mini")
    settings = engine_settings(AI_RATE_LIMITS={"gpt-4o": {"rpm": 1}}, AI_RATE_LIMIT_WAIT_SECONDS=30)
    with override_settings(WORKFLOW_ENGINE=settings):
        ai = create_ai_helper("task")
        assert ai.generate_text("gpt-4o", "one", fallbacks=["gpt-4o-mini"]).model == "gpt-4o"
        started = time.monotonic()
        second = ai.generate_text("gpt-4o", "two", fallbacks=["gpt-4o-mini"])
    assert (second.text, second.model, second.cost) == ("from mini", "gpt-4o-mini", MINI)
    assert time.monotonic() - started < 5
    rows = list(AICall.objects.order_by("created_at", "id").values_list("model_key", "cost"))
    assert rows == [("gpt-4o", FOUR_O), ("gpt-4o-mini", MINI)]  # the limited model was not sent the request


def test_generate_object_and_embed_fall_back_too(mock_ai):
    mock_ai.object(provider_error("ServiceUnavailableError"), model="gpt-4o")
    mock_ai.object({"name": "Oslo", "population": 700000}, model="gpt-4o-mini")
    mock_ai.embedding(provider_error("InternalServerError"), model="text-embedding-3-large")
    mock_ai.embedding([0.1, 0.2], model="text-embedding-3-small")
    ai = create_ai_helper("task")
    city = ai.generate_object("gpt-4o", "a city", schema=flows_ai.City, fallbacks=["gpt-4o-mini"])
    assert (city.object.name, city.model) == ("Oslo", "gpt-4o-mini")
    vectors = ai.embed("text-embedding-3-large", ["a"], fallbacks=["text-embedding-3-small"])
    assert (vectors.embeddings, vectors.model) == ([[0.1, 0.2]], "text-embedding-3-small")
    assert list(AICall.objects.order_by("created_at", "id").values_list("model_key", "error")) == [
        ("gpt-4o", "ServiceUnavailableError: litellm.ServiceUnavailableError: provider trouble"),
        ("gpt-4o-mini", None),
        ("text-embedding-3-large", "InternalServerError: litellm.InternalServerError: provider trouble"),
        ("text-embedding-3-small", None),
    ]


def test_a_stage_re_executed_gets_the_fallbacks_answer_back_from_the_journal(mock_ai):
    mock_ai.text(provider_error("InternalServerError"), model="gpt-4o")
    mock_ai.text("from mini", model="gpt-4o-mini")
    flows_ai.PLAN.update(model="gpt-4o", options={"fallbacks": ["gpt-4o-mini"]})
    run = engine.start("ai-text", {"topic": "otters"})
    engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert run.output == {"text": "from mini"}
    assert run.total_cost == 2 * MINI  # write and polish, each answered by the fallback


@pytest.mark.parametrize(
    ("options", "field"),
    [({"fallbacks": "gpt-4o-mini"}, "fallbacks"), ({"fallbacks": [None]}, "fallbacks"), ({"cache": -1}, "cache")],
)
def test_bad_traffic_options_are_refused_before_anything_is_sent(options, field):
    with pytest.raises(InvalidArgument) as caught:
        create_ai_helper("task").generate_text("gpt-4o", "hi", mock_response="x", **options)
    assert caught.value.field == field
    assert not AICall.objects.exists()


# -- the response cache -------------------------------------------------------------------------------------------


def test_an_identical_request_is_answered_from_the_cache_at_no_cost(mock_ai):
    mock_ai.text("fresh answer")
    ai = create_ai_helper("task")
    first = ai.generate_text("gpt-4o-mini", "hi", temperature=0, cache=True)
    second = ai.generate_text("gpt-4o-mini", "hi", temperature=0, cache=True)
    assert first.text == second.text == "fresh answer"
    assert (first.cost, second.cost) == (MINI, 0)
    assert len(mock_ai.calls) == 1  # the provider was asked once
    paid, cached = AICall.objects.order_by("created_at", "id")
    assert (paid.cached, paid.cost, paid.saved_cost) == (False, MINI, None)
    assert (cached.cached, cached.cost, cached.saved_cost, cached.response) == (True, 0, MINI, "fresh answer")
    # Nothing was consumed: no tokens on the row (the run's token total stays true); the original's are noted.
    assert (cached.input_tokens, cached.output_tokens, cached.metadata["saved_tokens"]) == (0, 0, 30)
    assert second.usage.total_tokens == 0


def test_a_different_prompt_model_or_parameter_is_not_a_hit(mock_ai):
    mock_ai.text("answer")
    ai = create_ai_helper("task")
    ai.generate_text("gpt-4o-mini", "hi", cache=True)
    ai.generate_text("gpt-4o-mini", "hello", cache=True)
    ai.generate_text("gpt-4o-mini", "hi", temperature=0.5, cache=True)
    ai.generate_text("gpt-4o", "hi", cache=True)
    ai.generate_text("gpt-4o-mini", "hi")  # not asked to use the cache
    assert len(mock_ai.calls) == 5
    assert not AICall.objects.filter(cached=True).exists()


def test_an_entry_expires_after_its_ttl(mock_ai):
    mock_ai.text("answer")
    ai = create_ai_helper("task")
    ai.generate_text("gpt-4o-mini", "hi", cache=0.3)
    ai.generate_text("gpt-4o-mini", "hi", cache=0.3)
    time.sleep(0.35)
    ai.generate_text("gpt-4o-mini", "hi", cache=0.3)
    assert len(mock_ai.calls) == 2
    assert list(AICall.objects.order_by("created_at", "id").values_list("cached", flat=True)) == [False, True, False]
    assert AIResponseCache.objects.count() == 1  # the expired entry was replaced


def test_the_setting_turns_the_cache_on_for_every_call_and_cache_false_opts_out(mock_ai):
    mock_ai.text("answer")
    with override_settings(WORKFLOW_ENGINE=engine_settings(AI_CACHE=60)):
        ai = create_ai_helper("task")
        ai.generate_text("gpt-4o-mini", "hi")
        ai.generate_text("gpt-4o-mini", "hi")
        ai.generate_text("gpt-4o-mini", "hi", cache=False)
    assert len(mock_ai.calls) == 2
    entry = AIResponseCache.objects.get()
    assert 59 <= (entry.expires_at - entry.created_at).total_seconds() <= 60


def test_failed_and_invalid_answers_are_not_cached(mock_ai):
    mock_ai.text(provider_error("InternalServerError"), times=1)
    mock_ai.object("not json", times=2)
    mock_ai.text("ok")
    ai = create_ai_helper("task")
    with pytest.raises(Exception, match="provider trouble"):
        ai.generate_text("gpt-4o-mini", "hi", cache=True)
    with pytest.raises(StructuredOutputError, match="does not match City"):
        ai.generate_object("gpt-4o-mini", "city", schema=flows_ai.City, cache=True)
    assert not AIResponseCache.objects.exists()
    assert ai.generate_text("gpt-4o-mini", "hi", cache=True).text == "ok"


def test_embeddings_are_cached(mock_ai):
    mock_ai.embedding([0.5, 0.5])
    ai = create_ai_helper("task")
    first = ai.embed("text-embedding-3-small", ["a", "b"], cache=True)
    second = ai.embed("text-embedding-3-small", ["a", "b"], cache=True)
    assert first.embeddings == second.embeddings == [[0.5, 0.5], [0.5, 0.5]]
    assert second.cost == 0
    assert list(AICall.objects.order_by("created_at", "id").values_list("cached", flat=True)) == [False, True]


def test_a_cache_hit_inside_a_run_adds_nothing_to_its_cost(mock_ai):
    mock_ai.text("answer")
    flows_ai.PLAN.update(calls=3, options={"cache": True})
    run = engine.start("ai-text", {"topic": "otters"})
    engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    # write: 1 paid + 2 cached; polish: 1 paid (another prompt)
    assert run.total_cost == 2 * MINI
    assert AICall.objects.filter(run=run, cached=True).count() == 2


def test_aicosts_and_the_costs_page_show_what_the_cache_saved(mock_ai, admin_client):
    mock_ai.text("answer")
    ai = create_ai_helper("task")
    for _ in range(3):
        ai.generate_text("gpt-4o-mini", "hi", cache=True)
    out = io.StringIO()
    call_command("aicosts", stdout=out)
    assert "The response cache answered 2 call(s) and saved 0.000027." in out.getvalue()
    out = io.StringIO()
    call_command("aicosts", "--format", "json", stdout=out)
    assert json.loads(out.getvalue())["cache"] == {"hits": 2, "saved": "0.000027"}
    page = admin_client.get("/admin/django_workflow_engine/aicall/costs/").content.decode()
    assert "Saved by the response cache (2 cached calls)" in page
    assert "$0.000027" in page


def test_maintenance_deletes_expired_entries_and_old_grants_only_when_configured(mock_ai):
    from datetime import timedelta

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from django_workflow_engine.ai.purge import purge_ai_traffic
    from django_workflow_engine.hosts.maintenance import run_maintenance_tick
    from django_workflow_engine.models import AIRateLimitGrant

    mock_ai.text("answer")
    ai = create_ai_helper("task")
    ai.generate_text("gpt-4o-mini", "old", cache=60)
    ai.generate_text("gpt-4o-mini", "fresh", cache=3600)
    AIResponseCache.objects.filter(expires_at__lt=timezone.now() + timedelta(minutes=5)).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    now = timezone.now()
    AIRateLimitGrant.objects.create(bucket="gpt-4o-mini", granted_at=now - timedelta(minutes=2), tokens=5)
    AIRateLimitGrant.objects.create(bucket="gpt-4o-mini", granted_at=now, tokens=5)

    with CaptureQueriesContext(connection) as captured:
        assert purge_ai_traffic(now) == 0  # not configured: nothing is even looked at
    assert captured.captured_queries == []

    configured = engine_settings(AI_CACHE=True, AI_RATE_LIMITS={"gpt-4o-mini": {"rpm": 10}})
    with override_settings(WORKFLOW_ENGINE=configured):
        result = run_maintenance_tick()
    assert result.ai_rows_purged == 2
    assert "ai_traffic" not in result.errors
    assert AIResponseCache.objects.count() == 1
    assert list(AIRateLimitGrant.objects.values_list("granted_at", flat=True)) == [now]
