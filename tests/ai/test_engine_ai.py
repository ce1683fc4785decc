"""AI calls inside real runs: live run totals, stage metrics, reruns, budgets, batches and failures."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.test import override_settings

from django_workflow_engine import engine
from django_workflow_engine.models import AICall, WorkflowLog, WorkflowRun, WorkflowStage
from tests.ai import flows_ai
from tests.ai.conftest import engine_settings

pytestmark = pytest.mark.django_db

CALL = Decimal("0.0000135")  # one gpt-4o-mini mock call: 10 x 1.5e-7 + 20 x 6e-7
TOKENS = 30  # 10 + 20 per mock call


def _run(**start):
    run = engine.start("ai-text", {"topic": "otters"}, **start)
    engine.run_until_idle()
    run.refresh_from_db()
    return run


def test_run_totals_are_exact_and_not_double_counted():
    flows_ai.PLAN["calls"] = 2
    run = _run()
    assert run.status == "COMPLETED"
    assert run.total_cost == 3 * CALL == Decimal("0.0000405")
    assert run.total_tokens == 3 * TOKENS
    rows = AICall.objects.for_run(run)
    assert rows.count() == 3
    write = WorkflowStage.objects.get(run=run, stage_id="write")
    assert {r.topic for r in rows.filter(stage=write)} == {f"workflow.{run.id}.stage.write"}
    # each call carries its workflow and stage ids (the cost report groups by them without a join)
    assert {(r.workflow_id, r.stage_key) for r in rows} == {("ai-text", "write"), ("ai-text", "polish")}
    assert (write.metrics["ai_cost"], write.metrics["ai_tokens"], write.metrics["ai_calls"]) == ("0.000027", 60, 2)
    assert AICall.objects.for_run(run).totals()["cost"] == run.total_cost


def test_totals_update_live_while_the_run_is_running():
    seen = {}
    flows_ai.PLAN["calls"] = 2
    from django_workflow_engine.ai import helper

    original = helper.AIHelper.generate_text

    def generate_text(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        seen.setdefault("after", []).append(WorkflowRun.objects.get(pk=self.run_id).total_cost)
        return result

    helper.AIHelper.generate_text = generate_text
    try:
        _run()
    finally:
        helper.AIHelper.generate_text = original
    assert seen["after"] == [CALL, 2 * CALL, 3 * CALL]


def test_rerun_cost_is_what_every_generation_spent():
    run = _run()
    assert run.total_cost == 2 * CALL
    engine.rerun_from(run.id, "polish")
    engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    # write + the first polish + the rerun polish: the run's cost is what it really spent, like the ledger
    assert run.total_cost == 3 * CALL
    assert AICall.objects.for_run(run).count() == 3
    assert AICall.objects.for_run(run).aggregate(total=Sum("cost"))["total"] == run.total_cost
    # the replaced polish record is kept as history and its call stays attributed to it
    old, new = WorkflowStage.all_generations.filter(run=run, stage_id="polish").order_by("attempt")
    assert (old.superseded_at is not None, new.superseded_at) == (True, None)
    assert AICall.objects.filter(stage=old).count() == AICall.objects.filter(stage=new).count() == 1
    by_stage = {(r["workflow_id"], r["stage_name"]): r["calls"] for r in AICall.objects.for_run(run).by_stage()}
    assert by_stage == {("ai-text", "polish"): 2, ("ai-text", "write"): 1}


def test_budget_stops_the_run_with_budget_and_spend():
    flows_ai.PLAN["calls"] = 3
    run = _run(max_cost="0.00002")
    assert run.status == "FAILED"
    message = run.output["error"]["message"]
    assert message == f"BudgetExceeded: Run {run.id!r} exceeded its cost budget: budget 0.00002, spent 0.000027."
    # The second call passed the budget: it is recorded (it was paid for) and raised; no third call was made.
    assert AICall.objects.for_run(run).count() == 2
    assert run.total_cost == 2 * CALL
    stage = WorkflowStage.objects.get(run=run, stage_id="write")
    assert stage.status == "FAILED"
    assert stage.error_message == message
    assert run.jobs.get(stage_id="write").attempt == 1  # BudgetExceeded is not retried


def test_budget_reached_exactly_refuses_the_next_call():
    flows_ai.PLAN["calls"] = 2
    run = _run(max_cost=CALL)
    assert run.status == "FAILED"
    assert "budget 0.0000135, spent 0.0000135" in run.output["error"]["message"]
    assert AICall.objects.for_run(run).count() == 1  # the second call was refused before it was sent


def test_default_budget_per_workflow_from_settings():
    with override_settings(WORKFLOW_ENGINE=engine_settings(AI_DEFAULT_MAX_COST={"ai-text": "0.00001"})):
        run = _run()
        assert run.status == "FAILED"
        assert "budget 0.00001, spent 0.0000135" in run.output["error"]["message"]
        generous = _run(max_cost="1")  # a run's own max_cost wins over the default
        assert generous.status == "COMPLETED"


def test_unpriced_calls_are_flagged_and_do_not_count_as_zero_cost():
    flows_ai.PLAN["model"] = "openai/private-model"
    run = _run()
    assert run.status == "COMPLETED"
    assert run.total_cost == 0
    assert run.total_tokens == 2 * TOKENS
    totals = AICall.objects.for_run(run).totals()
    assert (totals["calls"], totals["unpriced"]) == (2, 2)


def test_server_error_fails_the_stage(fake, conn):
    flows_ai.PLAN.update(model="fake-model", options={**conn, "max_retries": 0})
    fake.fail_next(500, 100)
    run = _run()
    assert run.status == "FAILED"
    assert run.output["error"]["stage_id"] == "write"
    assert "InternalServerError" in run.output["error"]["message"]
    rows = AICall.objects.for_run(run)
    assert rows.count() == 3  # one per stage attempt (MAX_ATTEMPTS = 3)
    assert all(r.error.startswith("InternalServerError") for r in rows)
    assert run.total_cost == 0
    assert WorkflowStage.objects.get(run=run, stage_id="write").metrics["ai_calls"] == 3


def test_stage_metrics_add_up_over_retries(fake, conn):
    flows_ai.PLAN.update(model="fake-model", options={**conn, "max_retries": 0}, calls=2)
    # Attempt 1: the first call succeeds, the second gets a 500. Attempt 2: the first call is replayed from
    # the journal (not sent again), the second succeeds.
    fake.reply_next(content="first")
    fake.requests.clear()
    original = fake._dispatch

    def dispatch(h, method, raw):
        if len(fake.requests) == 1:
            fake.fail_next(500)
        original(h, method, raw)

    fake._dispatch = dispatch
    run = _run()
    assert run.status == "COMPLETED"
    write = WorkflowStage.objects.get(run=run, stage_id="write")
    assert (write.metrics["ai_cost"], write.metrics["ai_calls"]) == ("0.0004", 3)  # 2 paid calls + 1 failed
    assert len(fake.requests) == 4  # write: 1 + 1 failed + 1 (attempt 2), polish: 1
    assert run.total_cost == 3 * Decimal("0.0002")  # 2 in write + 1 in polish
    assert AICall.objects.for_run(run).totals()["cost"] == run.total_cost


def test_rate_limit_then_success_completes_the_run(fake, conn):
    flows_ai.PLAN.update(model="fake-model", options={**conn, "num_retries": 2})
    fake.fail_next(429)
    run = _run()
    assert run.status == "COMPLETED"
    assert run.total_cost == 2 * Decimal("0.0002")  # two successful calls at 100 x 1e-6 + 50 x 2e-6
    assert AICall.objects.for_run(run).filter(error__isnull=False).count() == 0


def test_provider_batch_in_an_async_batch_stage(fake, conn):
    flows_ai.PLAN.update(connection=conn)
    fake.batch_status = "in_progress"
    run = engine.start("ai-batch", {"topic": "seals"})
    engine.run_until_idle()
    stage = WorkflowStage.objects.get(run=run, stage_id="batch")
    assert stage.status == "SUSPENDED"
    assert stage.suspended_state["batch_id"] == "batch_1"
    fake.batch_status = "completed"
    for _ in range(50):
        engine.run_until_idle()
        run.refresh_from_db()
        if run.status != "RUNNING":
            break
        time.sleep(0.02)
    assert run.status == "COMPLETED"
    assert run.output == {"answers": {"q1": "batch: q1", "q2": "batch: q2"}}
    assert run.total_cost == 2 * Decimal("0.000045")  # 200 x 7.5e-8 + 100 x 3e-7 per request (batch prices)
    assert run.total_tokens == 600
    rows = AICall.objects.for_run(run)
    assert rows.filter(is_batch=True).count() == 2
    assert set(rows.values_list("workflow_id", "stage_key")) == {("ai-batch", "batch")}
    # the submission is journaled (a re-executed execute gets its handle back): one zero-cost row
    submitted = rows.get(is_batch=False)
    assert (submitted.call_type, submitted.cost, submitted.metadata["phase"]) == ("batch", 0, "submit")
    assert submitted.metadata["batch_id"] == "batch_1"
    stage.refresh_from_db()  # check_completion's spend (the recorded results) is in the stage's metrics
    assert (stage.metrics["ai_cost"], stage.metrics["ai_tokens"], stage.metrics["ai_calls"]) == ("0.00009", 600, 3)


def test_prompt_policy_false_keeps_no_prompt_text_anywhere():
    flows_ai.PLAN["options"] = {"mock_response": "classified answer"}
    with override_settings(WORKFLOW_ENGINE=engine_settings(AI_LOG_PROMPTS=False)):
        run = _run(max_cost="0.00001")  # fails: its error is logged too
    assert run.status == "FAILED"
    for row in AICall.objects.all():
        assert row.prompt is None
        assert row.response is None
        assert row.replay is None  # the journal's copy of the response is dropped once the run has finished
        assert "otters" not in (row.call_key or "")  # a hash of the request, not its text
    texts = [log.message + str(log.metadata) for log in WorkflowLog.objects.filter(run=run)]
    texts += [str(s.error_message) for s in WorkflowStage.objects.filter(run=run)]
    assert texts
    assert not any("otters" in t or "classified" in t for t in texts)


@pytest.mark.django_db(transaction=True)
def test_async_stage_can_use_the_helper():
    # Django refuses sync queries inside an event loop; the helper does its writes on a helper thread.
    run = engine.start("ai-async", {"topic": "eels"})
    engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert run.output == {"text": "ok"}
    assert run.total_cost == CALL
    assert AICall.objects.for_run(run).get().stage.stage_id == "async-write"
