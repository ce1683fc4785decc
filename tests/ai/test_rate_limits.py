"""AI rate limits: the database and Redis limiters, the brief wait, and a stage deferred (same attempt) at the limit."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from django_workflow_engine import RateLimited, create_ai_helper, engine
from django_workflow_engine.ai.ratelimit import Limit
from django_workflow_engine.ai.ratelimit_db import DatabaseRateLimiter
from django_workflow_engine.models import AICall, WorkflowJob, WorkflowLog, WorkflowStage
from tests.ai import flows_ai
from tests.ai.conftest import engine_settings

pytestmark = pytest.mark.django_db


def flush_redis_limits() -> None:
    from django_workflow_engine.adapters.rq import get_queue

    connection = get_queue().connection
    for key in connection.scan_iter("dwe:ratelimit:*"):
        connection.delete(key)


@pytest.fixture(params=["database", pytest.param("redis", marks=pytest.mark.redis)])
def limiter(request):
    """Each limiter, with its Redis keys cleared around the test."""
    if request.param == "database":
        yield DatabaseRateLimiter()
        return
    from django_workflow_engine.ai.ratelimit_redis import RedisRateLimiter

    flush_redis_limits()
    yield RedisRateLimiter()
    flush_redis_limits()


def limits(**extra):
    return override_settings(WORKFLOW_ENGINE=engine_settings(**extra))


# -- the limiters -------------------------------------------------------------------------------------------------


def test_requests_per_window_are_granted_up_to_the_limit_then_the_wait_is_told(limiter):
    limit = Limit("m", rpm=3)
    grants = [limiter.acquire("m", limit, 0, 1.0) for _ in range(3)]
    assert all(g.granted for g in grants)
    assert grants[0].at <= grants[1].at <= grants[2].at
    refused = limiter.acquire("m", limit, 0, 1.0)
    assert not refused.granted
    assert 0 < refused.wait_seconds <= 1.0
    # Another model has its own count.
    assert limiter.acquire("other", limit, 0, 1.0).granted
    time.sleep(refused.wait_seconds + 0.01)
    again = limiter.acquire("m", limit, 0, 1.0)
    assert again.granted
    assert (again.at - grants[0].at).total_seconds() >= 1.0  # the oldest grant left the window first


def test_tokens_are_counted_and_the_estimate_corrected(limiter):
    limit = Limit("m", tpm=100)
    first = limiter.acquire("m", limit, 60, 5.0)
    assert first.granted
    assert not limiter.acquire("m", limit, 50, 5.0).granted  # 60 + 50 > 100
    limiter.correct("m", first.ticket, 20, 5.0)  # the call really used 20
    assert limiter.acquire("m", limit, 50, 5.0).granted  # 20 + 50 <= 100
    assert not limiter.acquire("m", limit, 40, 5.0).granted  # 70 + 40 > 100


def test_a_request_larger_than_the_whole_token_limit_goes_alone(limiter):
    limit = Limit("m", tpm=100)
    assert limiter.acquire("m", limit, 500, 5.0).granted  # the window was empty
    refused = limiter.acquire("m", limit, 1, 5.0)
    assert not refused.granted
    assert refused.wait_seconds > 4


# -- the helper ---------------------------------------------------------------------------------------------------


def test_a_call_over_the_limit_waits_briefly_then_goes_through():
    with limits(
        AI_RATE_LIMITS={"gpt-4o-mini": {"rpm": 2}}, AI_RATE_LIMIT_WINDOW_SECONDS=0.5, AI_RATE_LIMIT_WAIT_SECONDS=2
    ):
        ai = create_ai_helper("task.limited")
        started = time.monotonic()
        for _ in range(5):
            assert ai.generate_text("gpt-4o-mini", "hi", mock_response="ok").text == "ok"
        elapsed = time.monotonic() - started
    assert elapsed >= 1.0  # 5 calls at 2 per 0.5 s: the fifth waits for the third window
    rows = list(AICall.objects.order_by("created_at"))
    assert len(rows) == 5
    # A granted call is stamped with its grant time: no window of 0.5 s holds more than 2.
    stamps = [r.created_at for r in rows]
    for i in range(len(stamps) - 2):
        assert (stamps[i + 2] - stamps[i]).total_seconds() >= 0.5
    assert all(r.metadata["rate_limit"] == "gpt-4o-mini" for r in rows)


def test_beyond_the_brief_wait_a_call_outside_a_stage_raises_rate_limited():
    with limits(AI_RATE_LIMITS={"openai/*": {"rpm": 1}}, AI_RATE_LIMIT_WAIT_SECONDS=0):
        ai = create_ai_helper("task.limited")
        ai.generate_text("openai/gpt-4o-mini", "hi", mock_response="ok")
        before = timezone.now()
        with pytest.raises(RateLimited) as caught:
            ai.generate_text("openai/gpt-4o-mini", "hi", mock_response="ok")
    assert caught.value.model == "openai/gpt-4o-mini"
    assert before + timedelta(seconds=50) < caught.value.until <= before + timedelta(seconds=61)
    assert str(caught.value).startswith("Deferred: rate limit openai/gpt-4o-mini until ")
    assert AICall.objects.count() == 1  # the refused call never reached the provider


def test_unlimited_models_are_not_counted():
    with limits(AI_RATE_LIMITS={"gpt-4o": {"rpm": 1}}):
        ai = create_ai_helper("task")
        for _ in range(3):
            ai.generate_text("gpt-4o-mini", "hi", mock_response="ok")
    assert AICall.objects.count() == 3
    assert all("rate_limit" not in (r.metadata or {}) for r in AICall.objects.all())


# -- a stage at the limit is deferred ------------------------------------------------------------------------------


def test_a_stage_over_the_limit_is_deferred_as_the_same_attempt_and_completes_later():
    flows_ai.PLAN["calls"] = 3
    with limits(
        AI_RATE_LIMITS={"gpt-4o-mini": {"rpm": 2}}, AI_RATE_LIMIT_WINDOW_SECONDS=1.0, AI_RATE_LIMIT_WAIT_SECONDS=0
    ):
        run = engine.start("ai-text", {"topic": "otters"})
        engine.run_until_idle()
        job = WorkflowJob.objects.get(run=run, stage_id="write")
        stage = WorkflowStage.objects.get(run=run, stage_id="write")
        run.refresh_from_db()
        assert run.status == "RUNNING"
        assert (job.status, job.attempt, job.last_error) == ("PENDING", 0, None)
        assert job.wait_reason.startswith("rate limit gpt-4o-mini until ")
        assert timezone.now() < job.available_at <= timezone.now() + timedelta(seconds=1)
        assert stage.status == "PENDING"
        log = WorkflowLog.objects.get(run=run, message__contains="deferred")
        assert log.message == f"Stage 'write' deferred: {job.wait_reason}"
        assert AICall.objects.filter(run=run).count() == 2  # the third call was not sent

        # Later windows: the stages that follow may be deferred too (two calls a second); each wait is told.
        for _ in range(20):
            waiting = WorkflowJob.objects.filter(run=run, status="PENDING").order_by("available_at").first()
            if waiting is None:
                break
            time.sleep(max(0.0, (waiting.available_at - timezone.now()).total_seconds()) + 0.05)
            engine.run_until_idle()
    run.refresh_from_db()
    job.refresh_from_db()
    assert run.status == "COMPLETED", run.output
    assert job.attempt == 1  # the deferral did not use an attempt
    # The two calls made before the deferral were replayed from the journal, not sent again.
    assert AICall.objects.filter(run=run).count() == 4
    assert not WorkflowLog.objects.filter(run=run, level="ERROR").exists()


def test_deferrals_never_exhaust_the_retry_attempts():
    flows_ai.PLAN["calls"] = 4
    with limits(
        AI_RATE_LIMITS={"gpt-4o-mini": {"rpm": 1}},
        AI_RATE_LIMIT_WINDOW_SECONDS=0.3,
        AI_RATE_LIMIT_WAIT_SECONDS=0,
        MAX_ATTEMPTS=1,
    ):
        run = engine.start("ai-text", {"topic": "otters"})
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            engine.run_until_idle()
            run.refresh_from_db()
            if run.status != "RUNNING":
                break
            time.sleep(0.05)
    assert run.status == "COMPLETED", run.output  # deferred 3 times with a single attempt allowed
    write = WorkflowJob.objects.get(run=run, stage_id="write")
    assert write.attempt == 1
    assert WorkflowLog.objects.filter(run=run, message__startswith="Stage 'write' deferred").count() >= 3


def provider_429(retry_after: str | None):
    import httpx

    from django_workflow_engine.ai.costs import load_litellm

    headers = {"retry-after": retry_after} if retry_after is not None else {}
    response = httpx.Response(429, headers=headers, request=httpx.Request("POST", "https://api.openai.com/v1"))
    return load_litellm().RateLimitError("slow down", llm_provider="openai", model="gpt-4o-mini", response=response)


@pytest.mark.parametrize(("header", "seconds"), [("30", 30), (None, 20)])
def test_a_provider_429_defers_the_stage_until_retry_after(header, seconds):
    flows_ai.PLAN["options"] = {"mock_response": provider_429(header)}
    run = engine.start("ai-text", {"topic": "otters"})
    before = timezone.now()
    engine.run_until_idle()
    job = WorkflowJob.objects.get(run=run, stage_id="write")
    assert (job.status, job.attempt) == ("PENDING", 0)
    expected = before + timedelta(seconds=seconds)
    assert expected - timedelta(seconds=1) <= job.available_at <= expected + timedelta(seconds=3)
    assert job.wait_reason.startswith("rate limit gpt-4o-mini until ")
    failed = AICall.objects.get(run=run)
    assert failed.error.startswith("RateLimitError")  # the provider's refusal is on record


def test_a_short_retry_after_is_waited_out_in_the_stage(mock_ai):
    mock_ai.text(provider_429("0.2"), times=1)
    mock_ai.text("after the wait")
    flows_ai.PLAN["options"] = {}
    with limits(AI_RATE_LIMIT_WAIT_SECONDS=2):
        run = engine.start("ai-text", {"topic": "otters"})
        engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert run.output["text"] == "after the wait"
    assert AICall.objects.filter(run=run, error__isnull=False).count() == 1


def test_streams_are_rate_limited_too():
    with limits(AI_RATE_LIMITS={"gpt-4o-mini": {"rpm": 1}}, AI_RATE_LIMIT_WAIT_SECONDS=0):
        ai = create_ai_helper("task.stream")
        assert "".join(ai.stream_text("gpt-4o-mini", "hi", mock_response="streamed")) == "streamed"
        with pytest.raises(RateLimited):
            list(ai.stream_text("gpt-4o-mini", "hi", mock_response="streamed"))
    row = AICall.objects.get()
    assert (row.call_type, row.metadata["rate_limit"]) == ("stream", "gpt-4o-mini")


# -- what a limit costs ---------------------------------------------------------------------------------------------


def statements(fn) -> list[str]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        fn()
    # Savepoints are the test's transaction wrapping; in a worker these are BEGIN/COMMIT of the same blocks.
    return [q["sql"].split()[0] for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]


@pytest.mark.parametrize(
    ("limit", "added"),
    [({"rpm": 1000}, ["UPDATE", "DELETE", "SELECT", "INSERT"]), ({"rpm": 1000, "tpm": 10**6}, None)],
)
def test_the_database_limiter_adds_four_statements_per_call_and_one_to_correct_tokens(limit, added):
    ai = create_ai_helper("task")
    ai.generate_text("gpt-4o-mini", "warm up", mock_response="ok")
    plain = statements(lambda: ai.generate_text("gpt-4o-mini", "hi", mock_response="ok"))
    assert plain == ["INSERT"]  # the AICall row: nothing else without limits
    with limits(AI_RATE_LIMITS={"gpt-4o-mini": limit}):
        ai.generate_text("gpt-4o-mini", "warm up", mock_response="ok")  # the model's bucket row is created once
        limited = statements(lambda: ai.generate_text("gpt-4o-mini", "hi", mock_response="ok"))
    if added is None:  # with tpm: the estimate is corrected after the call
        added = ["UPDATE", "DELETE", "SELECT", "INSERT", "UPDATE"]
    assert limited == [*added, "INSERT"]


@pytest.mark.redis
def test_the_redis_limiter_adds_one_command_per_call_and_one_to_correct_tokens():
    from django_workflow_engine.adapters.rq import get_queue

    flush_redis_limits()
    connection = get_queue().connection
    sent: list[str] = []
    original = connection.execute_command

    def counting(*args, **kwargs):
        sent.append(str(args[0]))
        return original(*args, **kwargs)

    connection.execute_command = counting
    try:
        ai = create_ai_helper("task")
        for limit, expected in (({"rpm": 1000}, ["EVALSHA"]), ({"rpm": 1000, "tpm": 10**6}, ["EVALSHA", "EVALSHA"])):
            with limits(AI_RATE_LIMITER="redis", AI_RATE_LIMITS={"gpt-4o-mini": limit}):
                ai.generate_text("gpt-4o-mini", "warm up", mock_response="ok")  # loads the scripts once
                sent.clear()
                sql = statements(lambda: ai.generate_text("gpt-4o-mini", "hi", mock_response="ok"))
            assert sent == expected
            assert sql == ["INSERT"]  # no statement: only the AICall row
    finally:
        connection.execute_command = original
        flush_redis_limits()


def test_a_stage_may_defer_itself_with_stage_deferred():
    from pydantic import BaseModel

    from django_workflow_engine import StageDeferred, WorkflowBuilder, define_stage
    from django_workflow_engine.registry import registry

    class Empty(BaseModel):
        pass

    class Done(BaseModel):
        executions: int

    seen: list[int] = []  # one entry per execution

    @define_stage(id="wait-for-window", name="Wait for window", input=Empty, output=Done)
    def wait_for_window(ctx):
        seen.append(1)
        if len(seen) < 3:
            raise StageDeferred(timezone.now() + timedelta(seconds=0.2), "partner API window closed")
        return Done(executions=len(seen))

    workflow = (
        WorkflowBuilder("self-deferring", "Self deferring", input=Empty, output=Done).pipe(wait_for_window).build()
    )
    registry.register(workflow)
    try:
        with limits(MAX_ATTEMPTS=1):
            run = engine.start("self-deferring", {})
            engine.run_until_idle()
            assert WorkflowJob.objects.get(run=run).wait_reason == "partner API window closed"
            for _ in range(20):
                time.sleep(0.25)
                engine.run_until_idle()
                run.refresh_from_db()
                if run.status != "RUNNING":
                    break
    finally:
        registry.unregister("self-deferring")
    assert run.status == "COMPLETED"
    assert run.output == {"executions": 3}
    assert WorkflowJob.objects.get(run=run).attempt == 1  # three executions, one attempt (MAX_ATTEMPTS = 1)


@pytest.mark.django_db(transaction=True)  # the helper's queries run on a thread of their own in an async stage
def test_an_async_stage_is_deferred_too():
    with limits(AI_RATE_LIMITS={"gpt-4o-mini": {"rpm": 1}}, AI_RATE_LIMIT_WAIT_SECONDS=0):
        first = engine.start("ai-async", {"topic": "otters"})
        second = engine.start("ai-async", {"topic": "beavers"})
        engine.run_until_idle()
    first.refresh_from_db()
    assert first.status == "COMPLETED"
    job = WorkflowJob.objects.get(run=second)
    assert (job.status, job.attempt) == ("PENDING", 0)
    assert job.wait_reason.startswith("rate limit gpt-4o-mini until ")
