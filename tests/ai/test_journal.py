"""The AI call journal: a re-executed stage is given its recorded AI calls back instead of paying for them again.

A killed worker is simulated by a stage raising :class:`~tests.ai.flows_ai.WorkerKilled` (a ``BaseException``,
so the engine records nothing after it and the job stays leased, as with SIGKILL); the lease is then expired
and reaped, and the same stage row is executed again by the next drain. The fake OpenAI server counts the
provider requests.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.test import override_settings

from django_workflow_engine import engine
from django_workflow_engine.ai import create_ai_helper
from django_workflow_engine.ai.helper import AIHelper, Usage, record_call
from django_workflow_engine.ai.journal import AlreadyRecorded, CallJournal, request_hash
from django_workflow_engine.kernel import ReapStaleLeases
from django_workflow_engine.models import AICall, WorkflowJob, WorkflowLog, WorkflowRun, WorkflowStage
from tests.ai import flows_ai
from tests.ai.conftest import engine_settings
from tests.ai.flows_ai import JOURNAL, WorkerKilled

pytestmark = pytest.mark.django_db

FAKE_CHAT_COST = Decimal("0.0002")  # 100 x 1e-6 + 50 x 2e-6 per chat call on "fake-model" (AI_MODELS)


def _start(workflow: str = "ai-journal", topic: str = "otters") -> WorkflowRun:
    return engine.start(workflow, {"topic": topic})


def _killed(run: WorkflowRun) -> None:
    """Drain until the stage dies like a SIGKILLed worker, then expire and reap its lease."""
    with pytest.raises(WorkerKilled):
        engine.run_until_idle()
    job = WorkflowJob.objects.get(run=run, status="RUNNING")
    WorkflowJob.objects.filter(pk=job.pk).update(locked_at=job.locked_at - dt.timedelta(hours=1))
    assert engine.kernel.dispatch(ReapStaleLeases(stale_after_seconds=60)).released == 1


def _finish(run: WorkflowRun) -> WorkflowRun:
    engine.run_until_idle()
    run.refresh_from_db()
    return run


def _chat_requests(fake) -> int:
    return sum(1 for path in fake.paths() if path == "/chat/completions")


def _stage(run: WorkflowRun, stage_id: str = "think") -> WorkflowStage:
    return WorkflowStage.objects.get(run=run, stage_id=stage_id)


@pytest.fixture
def journal_conn(conn):
    JOURNAL["options"] = {**conn, "max_retries": 0}
    return conn


def test_killed_after_both_calls_replays_them_without_calling_the_provider(fake, journal_conn):
    JOURNAL["crashes"] = [(2, "kill")]
    run = _start()
    _killed(run)
    assert _chat_requests(fake) == 2
    assert AICall.objects.filter(stage__run=run).count() == 2
    run = _finish(run)
    assert run.status == "COMPLETED"
    assert run.output == {"text": "echo: otters: first | echo: otters: second"}
    assert _chat_requests(fake) == 2  # the re-execution was given the recorded answers
    rows = AICall.objects.for_run(run)
    assert rows.count() == 2
    assert run.total_cost == 2 * FAKE_CHAT_COST == rows.totals()["cost"]
    assert WorkflowJob.objects.get(run=run, stage_id="think").attempt == 2
    stage = _stage(run)
    # the killed execution stored no metrics; the one that completed counts the stage's rows once
    assert (stage.metrics["ai_cost"], stage.metrics["ai_tokens"], stage.metrics["ai_calls"]) == ("0.0004", 300, 2)


def test_killed_between_two_calls_makes_only_the_missing_one(fake, journal_conn):
    JOURNAL["crashes"] = [(1, "kill")]
    run = _start()
    _killed(run)
    assert _chat_requests(fake) == 1
    run = _finish(run)
    assert run.status == "COMPLETED"
    assert _chat_requests(fake) == 2
    assert [r["body"]["messages"][-1]["content"] for r in fake.requests] == ["otters: first", "otters: second"]
    keys = list(AICall.objects.for_run(run).order_by("id").values_list("call_key", flat=True))
    assert [k.split(":")[:2] for k in keys] == [["execute", "1"], ["execute", "2"]]
    assert run.total_cost == 2 * FAKE_CHAT_COST


def test_retried_stage_replays_and_metrics_count_each_call_once(fake, journal_conn):
    JOURNAL["crashes"] = [(2, "raise")]
    run = _finish(_start())
    assert run.status == "COMPLETED"
    assert _chat_requests(fake) == 2
    assert WorkflowJob.objects.get(run=run, stage_id="think").attempt == 2
    stage = _stage(run)
    assert (stage.metrics["ai_cost"], stage.metrics["ai_calls"]) == ("0.0004", 2)
    assert AICall.objects.for_run(run).count() == 2


def test_a_changed_prompt_is_a_new_call_not_a_stale_answer(fake, journal_conn):
    JOURNAL["crashes"] = [(2, "kill")]
    run = _start()
    _killed(run)
    JOURNAL["prompts"] = ["first", "second, reworded"]
    run = _finish(run)
    assert run.output == {"text": "echo: otters: first | echo: otters: second, reworded"}
    assert _chat_requests(fake) == 3
    rows = AICall.objects.for_run(run)
    assert rows.count() == 3  # the first answer to "second" was paid for: it stays in the ledger
    assert run.total_cost == 3 * FAKE_CHAT_COST == rows.totals()["cost"]
    assert _stage(run).metrics["ai_calls"] == 3


def test_failed_calls_are_not_memoized(fake, journal_conn):
    fake.fail_next(500)  # the first request fails: the stage raises and is retried
    run = _finish(_start())
    assert run.status == "COMPLETED"
    assert _chat_requests(fake) == 3  # failed, then both calls of attempt 2
    rows = AICall.objects.for_run(run).order_by("id")
    assert [r.error is not None for r in rows] == [True, False, False]
    assert rows[0].call_key is None


def test_rerun_calls_the_provider_again(fake, journal_conn):
    run = _finish(_start())
    assert _chat_requests(fake) == 2
    engine.rerun_from(run.id, "think")
    run = _finish(run)
    assert run.status == "COMPLETED"
    assert _chat_requests(fake) == 4  # a rerun is a new logical call: new stage rows, new keys
    assert AICall.objects.for_run(run).count() == 4
    assert AICall.objects.for_run(run).filter(stage=_stage(run)).count() == 2


@pytest.mark.parametrize("kind", ["object", "embed", "stream", "tools"])
def test_every_call_kind_is_replayed(fake, journal_conn, kind):
    JOURNAL.update(kind=kind, prompts=["Oslo"], crashes=[(1, "kill")])
    if kind == "tools":
        call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"city": "Oslo"}'}}
        fake.reply_next(tool_calls=[call])
        fake.reply_next(content="Oslo has 700000 people.")
    if kind == "object":
        fake.reply_next(content='{"name": "Oslo", "population": 700000}')
    run = _start()
    _killed(run)
    sent = len(fake.requests)
    rows = AICall.objects.filter(stage__run=run).count()
    first_output_rows = list(AICall.objects.filter(stage__run=run).values_list("call_key", "cost"))
    run = _finish(run)
    assert run.status == "COMPLETED"
    assert len(fake.requests) == sent  # nothing sent again
    assert AICall.objects.for_run(run).count() == rows  # nothing recorded again
    assert list(AICall.objects.for_run(run).values_list("call_key", "cost")) == first_output_rows
    expected = {
        "object": "Oslo",
        "embed": str([0.1, 0.1, 0.1]),
        "stream": "echo: otters: Oslo",
        "tools": "Oslo has 700000 people.",
    }[kind]
    assert run.output == {"text": expected}
    if kind == "tools":
        assert JOURNAL["tool_runs"] == 2  # the tool is stage code: it runs again; its row is written once
        assert AICall.objects.for_run(run).filter(call_type="tool").count() == 1
        assert AICall.objects.for_run(run).filter(call_type="text").count() == 2


def test_a_re_executed_batch_stage_does_not_submit_twice(fake, conn):
    flows_ai.PLAN["connection"] = conn
    JOURNAL["crashes"] = [True]
    run = _start("ai-journal-batch", "seals")
    _killed(run)
    assert fake.paths().count("/batches") == 1
    run = _finish(run)
    assert run.status == "COMPLETED"
    assert run.output == {"answers": {"q1": "batch: q1"}}
    assert fake.paths().count("/batches") == 1
    assert len(fake.batches) == 1
    assert AICall.objects.for_run(run).filter(is_batch=True).count() == 1


def test_calls_outside_a_stage_are_not_memoized(fake, conn):
    ai = create_ai_helper("task.digest")
    ai.generate_text("fake-model", "same", **conn)
    ai.generate_text("fake-model", "same", **conn)
    assert _chat_requests(fake) == 2
    assert list(AICall.objects.values_list("call_key", flat=True)) == [None, None]


def test_identical_calls_in_one_execution_are_distinct_logical_calls(fake, journal_conn):
    JOURNAL.update(prompts=["again", "again"], crashes=[(2, "kill")])
    run = _start()
    _killed(run)
    run = _finish(run)
    assert _chat_requests(fake) == 2
    assert AICall.objects.for_run(run).count() == 2


# -- two executions of one stage at once ----------------------------------------------------------------------


def test_concurrent_record_of_one_logical_call_keeps_one_row():
    run = _finish(_start())  # mock "ok" answers are not used: only the rows below count
    stage = _stage(run)
    before = WorkflowRun.objects.get(pk=run.pk).total_cost
    common = {
        "topic": "t",
        "call_type": "text",
        "model_key": "m",
        "model_id": "m",
        "prompt": None,
        "response": "a",
        "usage": Usage(10, 20),
        "cost": Decimal("0.001"),
        "run_id": run.id,
        "stage_pk": stage.pk,
        "call_key": "execute:9:abc",
        "replay": {"x": 1},
    }
    first = record_call(**common)
    with pytest.raises(AlreadyRecorded) as lost:
        record_call(**{**common, "response": "b", "replay": {"x": 2}})
    assert lost.value.row.pk == first.pk
    assert AICall.objects.filter(stage=stage, call_key="execute:9:abc").count() == 1
    # the loser's transaction was rolled back whole: the run's totals count the call once
    assert WorkflowRun.objects.get(pk=run.pk).total_cost == before + Decimal("0.001")


def test_the_execution_that_loses_the_race_continues_with_the_recorded_answer(fake, journal_conn, monkeypatch):
    JOURNAL["crashes"] = [(0, "kill")]  # a stage row left RUNNING, with no AI call made yet
    run = _start()
    _killed(run)
    stage = _stage(run)
    zombie = AIHelper("z", run_id=run.id, stage_pk=stage.pk, journal=CallJournal(stage.pk))
    replacement = AIHelper("z", run_id=run.id, stage_pk=stage.pk, journal=CallJournal(stage.pk))
    fake.reply_next(content="the zombie's answer")
    fake.reply_next(content="the replacement's answer")
    assert zombie.generate_text("fake-model", "q", **journal_conn).text == "the zombie's answer"
    # the replacement looked the call up before the zombie recorded it: it calls the provider too ...
    monkeypatch.setattr(CallJournal, "recorded", lambda self, key: None)
    result = replacement.generate_text("fake-model", "q", **journal_conn)
    # ... but the unique key lets one of them record it, and both go on with that answer
    assert result.text == "the zombie's answer"
    assert result.cost == FAKE_CHAT_COST
    assert _chat_requests(fake) == 2
    assert AICall.objects.filter(stage=stage).count() == 1
    assert WorkflowRun.objects.get(pk=run.pk).total_cost == FAKE_CHAT_COST


# -- prompt logging policy ------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [False, "redact"])
def test_prompt_policy_off_stores_no_prompt_text_and_drops_replay_data(fake, journal_conn, policy):
    JOURNAL.update(prompts=["the secret plan"], crashes=[(1, "kill")])
    fake.reply_next(content="classified answer")
    with override_settings(WORKFLOW_ENGINE=engine_settings(AI_LOG_PROMPTS=policy)):
        run = _start()
        _killed(run)
        row = AICall.objects.get(stage__run=run)
        # while the stage may still be re-executed, the journal holds the response, never the prompt
        assert row.replay is not None
        assert "secret" not in str(row.replay)
        run = _finish(run)
    assert run.status == "COMPLETED"
    assert run.output == {"text": "classified answer"}  # replayed after the kill
    assert _chat_requests(fake) == 1
    row = AICall.objects.get(stage__run=run)
    assert row.replay is None  # dropped as soon as the stage completed
    stored = [row.prompt, row.response, row.call_key, str(row.metadata)]
    stored += [log.message + str(log.metadata) for log in WorkflowLog.objects.filter(run=run)]
    assert not any(text and ("secret" in text or "classified" in text) for text in stored)


def test_replay_data_is_dropped_when_the_run_finishes_with_prompt_logging_on(fake, journal_conn):
    run = _finish(_start())
    assert run.status == "COMPLETED"
    assert not AICall.objects.for_run(run).filter(replay__isnull=False).exists()


# -- the key --------------------------------------------------------------------------------------------------


def test_request_hash_ignores_secrets_and_retries_but_not_the_request():
    base = {"messages": [{"role": "user", "content": "hi"}], "options": {"temperature": 0.2, "api_key": "a"}}
    same = {"messages": [{"role": "user", "content": "hi"}], "options": {"api_key": "b", "temperature": 0.2}}
    retried = {**base, "options": {**base["options"], "num_retries": 3, "timeout": 9}}
    assert request_hash(base) == request_hash(same) == request_hash(retried)
    assert request_hash(base) != request_hash({**base, "options": {"temperature": 0.3}})
    assert request_hash(base) != request_hash({**base, "messages": [{"role": "user", "content": "hi!"}]})
    assert len(request_hash(base)) == 64
