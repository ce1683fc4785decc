"""engine.signal through the public API (SQLite and PostgreSQL), and two signals racing for one waiting stage."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from django_workflow_engine import engine
from django_workflow_engine.errors import InvalidInput, InvalidRunState
from django_workflow_engine.models import WorkflowRun, WorkflowSignal

pytestmark = pytest.mark.django_db


def test_a_person_answers_and_the_run_finishes():
    run = engine.start("escalation", {"subject": "<script>x</script>"})
    engine.run_until_idle()
    assert WorkflowRun.objects.get(pk=run.id).stages.get(stage_id="review").status == "SUSPENDED"
    result = engine.signal(run.id, "review", {"decision": "approve", "note": "fine"}, actor="alice")
    assert result.stage_id == "review"
    signal = WorkflowSignal.objects.get(run=run)
    assert (signal.actor, signal.payload, signal.consumed_by is not None) == (
        "alice",
        {"decision": "approve", "note": "fine"},
        True,
    )
    engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert run.output == {"closed": True, "note": "fine"}


def test_a_bad_payload_names_the_field_and_writes_nothing():
    run = engine.start("escalation", {"subject": "x"})
    engine.run_until_idle()
    with pytest.raises(InvalidInput, match="field 'decision'"):
        engine.signal(run.id, "review", {"decision": 3})
    assert not WorkflowSignal.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_signals_racing_for_one_stage_exactly_one_wins():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL pass: real concurrent transactions")
    run = engine.start("escalation", {"subject": "race"})
    engine.run_until_idle()
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def answer(decision: str) -> None:
        barrier.wait()
        try:
            engine.signal(run.id, "review", {"decision": decision})
            outcomes.append(f"won:{decision}")
        except InvalidRunState:
            outcomes.append("refused")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=answer, args=(d,)) for d in ("approve", "reject")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(o.split(":")[0] for o in outcomes) == ["refused", "won"]
    assert WorkflowSignal.objects.filter(run_id=run.id).count() == 1
    engine.run_until_idle()
    winner = next(o for o in outcomes if o.startswith("won")).split(":")[1]
    assert WorkflowRun.objects.get(pk=run.id).output["closed"] is (winner == "approve")
