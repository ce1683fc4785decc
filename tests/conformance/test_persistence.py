"""The Persistence port: the in-memory reference and the ORM adapter must behave the same."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction

from django_workflow_engine.core.errors import RunNotFound, StaleVersionError, WorkflowEngineError
from django_workflow_engine.kernel.records import AnnotationRecord, NewJob, Status

pytestmark = pytest.mark.django_db  # the ORM variant needs the test database


def event(run_id: str, type_: str, clock, **extra):
    return {"type": type_, "timestamp": clock.now().isoformat(), "workflow_run_id": run_id, **extra}


# -- runs ---------------------------------------------------------------------------------------------------
def test_create_run_sets_timestamps_and_version(adapters):
    now = adapters.now()
    run = adapters.run("r1", priority=7, config={"s": {"a": 1}}, max_cost=Decimal("1.5"))
    assert (run.id, run.version, run.created_at, run.updated_at) == ("r1", 1, now, now)
    stored = adapters.persistence.get_run("r1")
    assert stored.status == Status.PENDING
    assert stored.priority == 7
    assert stored.input == {"x": 1}
    assert stored.config == {"s": {"a": 1}}
    assert stored.max_cost == Decimal("1.5")
    assert stored.total_cost == 0
    assert stored.created_at == now


def test_create_run_twice_is_refused(adapters):
    adapters.run("r1")
    with pytest.raises(WorkflowEngineError, match="already exists"):
        adapters.run("r1")


def _record(run_id, **fields):
    from django_workflow_engine.kernel.records import RunRecord

    return RunRecord(id=run_id, workflow_id="wf", workflow_name="W", workflow_type="wf", input={"i": run_id}, **fields)


def test_create_runs_inserts_all_in_order(adapters):
    now = adapters.now()
    made = adapters.persistence.create_runs([_record("r1"), _record("r2", priority=9), _record("r3")], now)
    assert [(r.id, r.version, r.created_at) for r in made] == [("r1", 1, now), ("r2", 1, now), ("r3", 1, now)]
    assert adapters.persistence.get_run("r2").priority == 9
    assert adapters.persistence.get_run("r3").input == {"i": "r3"}
    assert adapters.persistence.create_runs([], now) == []


@pytest.mark.parametrize("deferring", [False, True])
def test_create_runs_with_an_existing_id_writes_none(adapters, deferring):
    adapters.run("r2")
    batch = [_record("r1"), _record("r2"), _record("r3")]
    # Not deferring: a plain Django transaction around the call (the memory adapter ignores it).
    block = adapters.persistence.atomic() if deferring else transaction.atomic()
    with pytest.raises(WorkflowEngineError, match="already exists"), block:
        adapters.persistence.create_runs(batch, adapters.now())
    assert adapters.persistence.get_run("r1") is None
    assert adapters.persistence.get_run("r3") is None


@pytest.mark.parametrize("many", [False, True])
def test_events_of_runs_created_in_the_same_deferred_transaction_are_numbered_from_one(adapters, many):
    with adapters.persistence.atomic():
        if many:
            adapters.persistence.create_runs([_record("r1"), _record("r2")], adapters.now())
        else:
            adapters.persistence.create_run(_record("r1"), adapters.now())
            adapters.persistence.create_run(_record("r2"), adapters.now())
        adapters.persistence.append_events(
            [event("r1", "a", adapters.clock), event("r2", "a", adapters.clock), event("r1", "b", adapters.clock)], "c"
        )
        adapters.persistence.append_events([event("r1", "c", adapters.clock)], "c")
    adapters.persistence.append_events([event("r1", "d", adapters.clock), event("r2", "b", adapters.clock)], "c")
    assert [(e.sequence, e.event_type) for e in adapters.persistence.get_events("r1")] == [
        (1, "a"),
        (2, "b"),
        (3, "c"),
        (4, "d"),
    ]
    assert [(e.sequence, e.event_type) for e in adapters.persistence.get_events("r2")] == [(1, "a"), (2, "b")]


def test_a_deferred_create_of_an_existing_run_is_refused_and_writes_nothing(adapters):
    adapters.run("r1", input={"first": True})
    with pytest.raises(WorkflowEngineError, match="already exists"), adapters.persistence.atomic():  # noqa: PT012
        adapters.persistence.create_run(_record("r1"), adapters.now())
        adapters.persistence.append_events([event("r1", "x", adapters.clock)], "c")
    assert adapters.persistence.get_run("r1").input == {"first": True}
    assert adapters.persistence.get_events("r1") == []


def test_get_missing_run_is_none(adapters):
    assert adapters.persistence.get_run("nope") is None


def test_returned_records_are_copies(adapters):
    adapters.run("r1", input={"items": [1]})
    adapters.persistence.get_run("r1").input["items"].append(2)
    assert adapters.persistence.get_run("r1").input == {"items": [1]}


def test_update_run_bumps_version_and_updated_at(adapters):
    adapters.run("r1")
    later = adapters.clock.advance(seconds=5)
    assert adapters.persistence.update_run("r1", {"status": Status.RUNNING, "output": {"a": 1}}, later) == 2
    run = adapters.persistence.get_run("r1")
    assert (run.status, run.output, run.version, run.updated_at) == (Status.RUNNING, {"a": 1}, 2, later)


def test_update_run_with_no_fields_still_bumps_version(adapters):
    adapters.run("r1")
    assert adapters.persistence.update_run("r1", {}, adapters.now()) == 2


def test_update_run_with_expected_version(adapters):
    adapters.run("r1")
    assert adapters.persistence.update_run("r1", {"priority": 9}, adapters.now(), expected_version=1) == 2
    assert adapters.persistence.get_run("r1").priority == 9


def test_stale_expected_version_raises_and_writes_nothing(adapters):
    adapters.run("r1")
    adapters.persistence.update_run("r1", {}, adapters.now())
    with pytest.raises(StaleVersionError) as info:
        adapters.persistence.update_run("r1", {"priority": 1}, adapters.clock.advance(seconds=1), expected_version=1)
    assert (info.value.expected, info.value.actual) == (1, 2)
    run = adapters.persistence.get_run("r1")
    assert (run.priority, run.version) == (5, 2)


def test_update_run_rejects_unknown_field(adapters):
    adapters.run("r1")
    with pytest.raises(AttributeError):
        adapters.persistence.update_run("r1", {"colour": "red"}, adapters.now())
    assert adapters.persistence.get_run("r1").version == 1


def test_update_missing_run_raises(adapters):
    with pytest.raises(RunNotFound):
        adapters.persistence.update_run("nope", {"priority": 1}, adapters.now())


def test_add_run_totals_accumulates_without_version_bump(adapters):
    adapters.run("r1")
    adapters.persistence.add_run_totals("r1", Decimal("0.25"), 10)
    adapters.persistence.add_run_totals("r1", Decimal("0.5"), 5)
    run = adapters.persistence.get_run("r1")
    assert (run.total_cost, run.total_tokens, run.version) == (Decimal("0.75"), 15, 1)


def test_lock_run_reads_inside_atomic(adapters):
    adapters.run("r1")
    with adapters.persistence.atomic():
        assert adapters.persistence.lock_run("r1").id == "r1"
        assert adapters.persistence.lock_run("nope") is None


def test_lock_run_given_the_run_as_read_before_returns_what_a_whole_read_does(adapters):
    persistence = adapters.persistence
    known = adapters.run("r1", input={"doc": "a"}, config={"s": {"k": 1}}, metadata={"m": 1})
    adapters.clock.advance(seconds=1)
    persistence.add_run_totals("r1", Decimal("0.25"), 7)  # written without moving the version
    with persistence.atomic():
        assert persistence.lock_run("r1", known=known) == persistence.lock_run("r1")
        assert persistence.lock_run("r1", known=known).total_tokens == 7
    persistence.update_run("r1", {"status": "RUNNING", "config": {"s": {"k": 2}}}, adapters.now())  # moves it
    with persistence.atomic():
        locked = persistence.lock_run("r1", known=known)
        assert locked == persistence.lock_run("r1")
        assert (locked.status, locked.config, locked.version) == ("RUNNING", {"s": {"k": 2}}, known.version + 1)
    with persistence.atomic():
        assert persistence.lock_run("gone", known=dataclasses.replace(known, id="gone")) is None


# -- claim --------------------------------------------------------------------------------------------------
def test_claim_takes_highest_priority_then_oldest(adapters):
    adapters.run("old-low", priority=1)
    adapters.clock.advance(seconds=1)
    adapters.run("old-high", priority=9)
    adapters.clock.advance(seconds=1)
    adapters.run("new-high", priority=9)
    now = adapters.clock.advance(seconds=1)
    claimed = [adapters.persistence.claim_next_pending_run(now).id for _ in range(3)]
    assert claimed == ["old-high", "new-high", "old-low"]


def test_claim_ties_on_created_at_break_by_id(adapters):
    adapters.run("b")
    adapters.run("a")
    assert adapters.persistence.claim_next_pending_run(adapters.now()).id == "a"


def test_claim_sets_running_started_at_and_bumps_version(adapters):
    adapters.run("r1")
    now = adapters.clock.advance(seconds=3)
    run = adapters.persistence.claim_next_pending_run(now)
    assert (run.status, run.started_at, run.updated_at, run.version) == (Status.RUNNING, now, now, 2)
    assert adapters.persistence.get_run("r1") == run


def test_claim_returns_none_when_nothing_pending(adapters):
    assert adapters.persistence.claim_next_pending_run(adapters.now()) is None


def test_claim_never_takes_a_running_run(adapters):
    adapters.run("r1")
    adapters.persistence.update_run("r1", {"status": Status.RUNNING}, adapters.now())
    assert adapters.persistence.claim_next_pending_run(adapters.now()) is None


def test_orm_claim_fallback_path(orm, monkeypatch):
    """The select-then-conditional-update path used on databases without UPDATE ... RETURNING."""
    from django_workflow_engine.adapters.statements import core

    monkeypatch.setattr(core, "SINGLE_STATEMENT_CLAIM_VENDORS", frozenset())
    orm.run("low", priority=1)
    orm.run("high", priority=9)
    assert orm.persistence.claim_next_pending_run(orm.now()).id == "high"
    assert orm.persistence.claim_next_pending_run(orm.now()).id == "low"
    assert orm.persistence.claim_next_pending_run(orm.now()) is None


# -- stages -------------------------------------------------------------------------------------------------
def test_create_stages_sets_timestamps(adapters):
    adapters.run("r1")
    stage = adapters.stage("r1", "a", config={"k": 1})
    assert (stage.version, stage.created_at, stage.status, stage.config) == (
        1,
        adapters.now(),
        Status.PENDING,
        {"k": 1},
    )
    assert adapters.persistence.get_stage("r1", "a") == stage


def test_create_stages_keeps_existing_record_untouched(adapters):
    adapters.run("r1")
    first = adapters.stage("r1", "a", id="pk-1")
    adapters.persistence.update_stage("pk-1", {"status": Status.RUNNING}, adapters.now())
    again = adapters.stage("r1", "a", id="pk-2", status=Status.FAILED)
    assert again.id == first.id == "pk-1"
    assert again.status == Status.RUNNING
    assert again.version == 2
    assert [s.id for s in adapters.persistence.get_stages("r1")] == ["pk-1"]


def test_create_stages_returns_input_order(adapters):
    from django_workflow_engine.kernel.records import StageRecord

    adapters.run("r1")
    adapters.stage("r1", "b", id="pk-b", number=2)
    records = [
        StageRecord(id=f"pk-{s}", run_id="r1", stage_id=s, stage_name=s, stage_number=n, execution_group=1)
        for n, s in ((3, "c"), (2, "b"), (1, "a"))
    ]
    assert [s.stage_id for s in adapters.persistence.create_stages(records, adapters.now())] == ["c", "b", "a"]


def test_insert_stages_writes_new_records_and_refuses_an_existing_one(adapters):
    from django.db import DatabaseError

    from django_workflow_engine.core.errors import WorkflowEngineError
    from django_workflow_engine.kernel.records import StageRecord

    adapters.run("r1")
    records = [
        StageRecord(id=f"pk-{s}", run_id="r1", stage_id=s, stage_name=s, stage_number=n, execution_group=1)
        for n, s in ((1, "a"), (2, "b"))
    ]
    stored = adapters.persistence.insert_stages(records, adapters.now())
    assert [(s.id, s.version, s.created_at) for s in stored] == [
        ("pk-a", 1, adapters.now()),
        ("pk-b", 1, adapters.now()),
    ]
    assert [s.id for s in adapters.persistence.get_stages("r1")] == ["pk-a", "pk-b"]
    again = StageRecord(id="pk-a2", run_id="r1", stage_id="a", stage_name="a", stage_number=1, execution_group=1)
    with pytest.raises((WorkflowEngineError, DatabaseError)), adapters.persistence.atomic():
        adapters.persistence.insert_stages([again], adapters.now())
    assert [s.id for s in adapters.persistence.get_stages("r1")] == ["pk-a", "pk-b"]


def test_get_missing_stage_is_none(adapters):
    adapters.run("r1")
    assert adapters.persistence.get_stage("r1", "zzz") is None


def test_stages_ordered_by_group_then_number(adapters):
    adapters.run("r1")
    adapters.stage("r1", "late", group=2, number=3)
    adapters.stage("r1", "p2", group=1, number=2)
    adapters.stage("r1", "p1", group=1, number=1)
    assert [s.stage_id for s in adapters.persistence.get_stages("r1")] == ["p1", "p2", "late"]


def test_update_stage_bumps_version(adapters):
    adapters.run("r1")
    stage = adapters.stage("r1", "a")
    later = adapters.clock.advance(seconds=2)
    fields = {"status": Status.SUSPENDED, "suspended_state": {"batch": "b1"}, "next_poll_at": later}
    assert adapters.persistence.update_stage(stage.id, fields, later, expected_version=1) == 2
    stored = adapters.persistence.get_stage("r1", "a")
    assert (stored.status, stored.suspended_state, stored.next_poll_at) == (Status.SUSPENDED, {"batch": "b1"}, later)
    assert stored.updated_at == later


def test_update_stage_stale_raises_and_writes_nothing(adapters):
    adapters.run("r1")
    stage = adapters.stage("r1", "a")
    adapters.persistence.update_stage(stage.id, {}, adapters.now())
    with pytest.raises(StaleVersionError):
        adapters.persistence.update_stage(stage.id, {"error_message": "x"}, adapters.now(), expected_version=1)
    assert adapters.persistence.get_stage("r1", "a").error_message is None


def test_update_stage_rejects_unknown_field_and_missing_stage(adapters):
    adapters.run("r1")
    stage = adapters.stage("r1", "a")
    with pytest.raises(AttributeError):
        adapters.persistence.update_stage(stage.id, {"nope": 1}, adapters.now())
    with pytest.raises(WorkflowEngineError):
        adapters.persistence.update_stage("missing", {}, adapters.now())


def test_supersede_stages_from_group_keeps_them_as_history(adapters):
    adapters.run("r1")
    adapters.stage("r1", "a", group=1, number=1, status=Status.COMPLETED)
    adapters.stage("r1", "c", group=3, number=3, status=Status.RUNNING)
    adapters.stage("r1", "b", group=2, number=2, status=Status.FAILED, error_message="RateLimitError: slow down")
    now = adapters.clock.advance(seconds=5)
    replaced = adapters.persistence.supersede_stages_from_group("r1", 2, now, "alice")
    assert [(s.stage_id, s.status, s.superseded_at) for s in replaced] == [
        ("b", Status.FAILED, None),
        ("c", Status.RUNNING, None),
    ]
    # "the stages of the run" are the current generation only
    assert [s.stage_id for s in adapters.persistence.get_stages("r1")] == ["a"]
    assert adapters.persistence.get_stage("r1", "b") is None
    history = {s.stage_id: s for s in adapters.persistence.get_stage_history("r1")}
    assert set(history) == {"a", "b", "c"}
    b, c = history["b"], history["c"]
    assert (b.status, b.error_message, b.superseded_at, b.superseded_by, b.version) == (
        Status.FAILED,
        "RateLimitError: slow down",
        now,
        "alice",
        2,
    )
    # an open record of the replaced generation is closed, not left RUNNING forever
    assert (c.status, c.completed_at, c.superseded_by) == (Status.CANCELLED, now, "alice")
    assert history["a"].superseded_at is None
    # nothing more to supersede in those groups
    assert adapters.persistence.supersede_stages_from_group("r1", 2, now) == []


def test_superseded_stage_is_read_only_and_a_new_generation_can_be_created(adapters):
    adapters.run("r1")
    old = adapters.stage("r1", "a", status=Status.FAILED)
    adapters.persistence.supersede_stages_from_group("r1", 1, adapters.now())
    with pytest.raises(WorkflowEngineError, match="superseded"):
        adapters.persistence.update_stage(old.id, {"status": Status.COMPLETED}, adapters.now())
    new = adapters.stage("r1", "a", attempt=1)
    assert new.id != old.id
    assert adapters.persistence.get_stage("r1", "a").id == new.id
    # one current record per stage: creating it again returns the existing record
    again = adapters.stage("r1", "a", attempt=1)
    assert again.id == new.id
    assert [(s.attempt, s.id) for s in adapters.persistence.get_stage_history("r1")] == [(0, old.id), (1, new.id)]
    adapters.persistence.update_stage(new.id, {"status": Status.COMPLETED}, adapters.now())
    assert adapters.persistence.get_stage("r1", "a").status == Status.COMPLETED


def test_superseded_stages_keep_their_logs_and_annotations(adapters):
    adapters.run("r1")
    stage = adapters.stage("r1", "a")
    adapters.persistence.append_annotations(
        [AnnotationRecord(id=0, run_id="r1", key="k", value=1, scope="stage", stage_pk=stage.id)], adapters.now()
    )
    adapters.persistence.create_log("r1", stage.id, "ERROR", "stage failed", None, adapters.now())
    adapters.persistence.create_log("r1", None, "INFO", "run log", None, adapters.now())
    adapters.persistence.supersede_stages_from_group("r1", 1, adapters.now())
    [annotation] = adapters.persistence.list_annotations("r1", {})
    assert annotation.stage_pk == stage.id
    logs = adapters.persistence.get_logs("r1")
    assert [(log.message, log.stage_pk) for log in logs] == [("stage failed", stage.id), ("run log", None)]


def test_superseded_stages_are_not_polled_cancelled_or_counted_as_activity(adapters):
    adapters.run("r1", status=Status.RUNNING)
    adapters.stage("r1", "a", status=Status.SUSPENDED, next_poll_at=adapters.now())
    adapters.persistence.supersede_stages_from_group("r1", 1, adapters.now())
    later = adapters.clock.advance(seconds=60)
    assert adapters.persistence.get_due_suspended_stages(later, 10) == []
    assert adapters.persistence.cancel_open_stages("r1", later) == 0
    assert [r.id for r in adapters.persistence.get_stuck_runs(later)] == ["r1"]


def test_cancel_open_stages_skips_finished(adapters):
    adapters.run("r1")
    ids = {}
    for n, status in enumerate(
        [Status.PENDING, Status.RUNNING, Status.SUSPENDED, Status.COMPLETED, Status.FAILED, Status.CANCELLED], 1
    ):
        ids[status] = adapters.stage("r1", status.lower(), number=n, status=status, next_poll_at=adapters.now()).id
    now = adapters.clock.advance(seconds=1)
    assert adapters.persistence.cancel_open_stages("r1", now) == 3
    by_id = {s.stage_id: s for s in adapters.persistence.get_stages("r1")}
    for name in ("pending", "running", "suspended"):
        stage = by_id[name]
        assert (stage.status, stage.completed_at, stage.next_poll_at, stage.version) == (Status.CANCELLED, now, None, 2)
    assert by_id["completed"].status == Status.COMPLETED
    assert by_id["failed"].version == 1


def test_due_suspended_stages(adapters):
    adapters.run("r1")
    now = adapters.now()
    adapters.stage("r1", "later", number=1, status=Status.SUSPENDED, next_poll_at=now + timedelta(seconds=60))
    adapters.stage("r1", "due2", number=2, status=Status.SUSPENDED, next_poll_at=now)
    adapters.stage("r1", "due1", number=3, status=Status.SUSPENDED, next_poll_at=now - timedelta(seconds=5))
    adapters.stage("r1", "running", number=4, status=Status.RUNNING, next_poll_at=now - timedelta(seconds=5))
    adapters.stage("r1", "nopoll", number=5, status=Status.SUSPENDED)
    assert [s.stage_id for s in adapters.persistence.get_due_suspended_stages(now, 10)] == ["due1", "due2"]
    assert [s.stage_id for s in adapters.persistence.get_due_suspended_stages(now, 1)] == ["due1"]


# -- stuck runs ---------------------------------------------------------------------------------------------
def running_run(adapters, run_id):
    adapters.run(run_id)
    adapters.persistence.update_run(run_id, {"status": Status.RUNNING}, adapters.now())


def test_quiet_running_run_is_stuck(adapters):
    running_run(adapters, "r1")
    adapters.stage("r1", "a", status=Status.RUNNING)
    cutoff = adapters.clock.advance(seconds=60)
    assert [r.id for r in adapters.persistence.get_stuck_runs(cutoff)] == ["r1"]


def test_recently_updated_run_is_not_stuck(adapters):
    running_run(adapters, "r1")
    assert adapters.persistence.get_stuck_runs(adapters.now() - timedelta(seconds=1)) == []


def test_recent_stage_activity_is_not_stuck(adapters):
    running_run(adapters, "r1")
    stage = adapters.stage("r1", "a", status=Status.RUNNING)
    adapters.persistence.update_stage(stage.id, {}, adapters.clock.advance(seconds=100))
    assert adapters.persistence.get_stuck_runs(adapters.now() - timedelta(seconds=10)) == []


def test_suspended_stage_with_future_poll_is_not_stuck(adapters):
    running_run(adapters, "r1")
    adapters.stage("r1", "a", status=Status.SUSPENDED, next_poll_at=adapters.now() + timedelta(hours=1))
    running_run(adapters, "r2")
    adapters.stage("r2", "a", status=Status.SUSPENDED, max_wait_until=adapters.now() + timedelta(hours=1))
    assert adapters.persistence.get_stuck_runs(adapters.clock.advance(seconds=60)) == []


def test_stuck_runs_skip_non_running_and_are_oldest_first_with_limit(adapters):
    running_run(adapters, "first")
    adapters.clock.advance(seconds=1)
    running_run(adapters, "second")
    adapters.run("pending")
    cutoff = adapters.clock.advance(seconds=60)
    assert [r.id for r in adapters.persistence.get_stuck_runs(cutoff)] == ["first", "second"]
    assert [r.id for r in adapters.persistence.get_stuck_runs(cutoff, limit=1)] == ["first"]


# -- logs ---------------------------------------------------------------------------------------------------
def test_logs_in_insertion_order(adapters):
    adapters.run("r1")
    stage = adapters.stage("r1", "a")
    adapters.persistence.create_log("r1", None, "INFO", "one", {"n": 1}, adapters.now())
    adapters.persistence.create_log("r1", stage.id, "ERROR", "two", None, adapters.clock.advance(seconds=1))
    logs = adapters.persistence.get_logs("r1")
    assert [(log.level, log.message, log.metadata, log.stage_pk) for log in logs] == [
        ("INFO", "one", {"n": 1}, None),
        ("ERROR", "two", None, stage.id),
    ]
    assert logs[1].created_at == adapters.now()
    assert adapters.persistence.get_logs("other") == []


# -- outbox -------------------------------------------------------------------------------------------------
def test_outbox_sequences_start_at_one_per_run(adapters):
    adapters.run("r1")
    adapters.run("r2")
    c = adapters.clock
    adapters.persistence.append_events([event("r1", "a", c), event("r2", "x", c), event("r1", "b", c)], "cmd-1")
    adapters.persistence.append_events([event("r1", "c", c)], "cmd-2")
    assert [(e.sequence, e.event_type) for e in adapters.persistence.get_events("r1")] == [(1, "a"), (2, "b"), (3, "c")]
    [only] = adapters.persistence.get_events("r2")
    assert (only.sequence, only.event_type, only.causation_id, only.occurred_at) == (1, "x", "cmd-1", c.now())
    assert only.payload == event("r2", "x", c)


def test_outbox_for_missing_run_still_gapless(adapters):
    c = adapters.clock
    adapters.persistence.append_events([event("ghost", "a", c)], "c1")
    adapters.persistence.append_events([event("ghost", "b", c)], "c2")
    assert [e.sequence for e in adapters.persistence.get_events("ghost")] == [1, 2]


def test_unpublished_order_and_limit(adapters):
    for run_id in ("rb", "ra"):
        adapters.run(run_id)
    c = adapters.clock
    adapters.persistence.append_events([event("rb", "b1", c), event("ra", "a1", c), event("ra", "a2", c)], "c")
    assert [e.event_type for e in adapters.persistence.get_unpublished_events(10)] == ["a1", "a2", "b1"]
    assert [e.event_type for e in adapters.persistence.get_unpublished_events(2)] == ["a1", "a2"]


def test_mark_published(adapters):
    adapters.run("r1")
    c = adapters.clock
    adapters.persistence.append_events([event("r1", "a", c), event("r1", "b", c)], "c")
    first = adapters.persistence.get_unpublished_events(10)[0]
    adapters.persistence.mark_events_published([first.id], c.now())
    assert [e.event_type for e in adapters.persistence.get_unpublished_events(10)] == ["b"]
    assert adapters.persistence.get_events("r1")[0].published_at == c.now()


def test_event_failures_dead_letter_at_max_and_replay(adapters):
    adapters.run("r1")
    c = adapters.clock
    adapters.persistence.append_events([event("r1", "a", c)], "c")
    [e] = adapters.persistence.get_unpublished_events(10)
    assert adapters.persistence.record_event_failure(e.id, 3, c.now()) is False
    assert adapters.persistence.record_event_failure(e.id, 3, c.now()) is False
    assert adapters.persistence.get_events("r1")[0].retry_count == 2
    assert adapters.persistence.record_event_failure(e.id, 3, c.now()) is True
    stored = adapters.persistence.get_events("r1")[0]
    assert (stored.retry_count, stored.dlq_at) == (3, c.now())
    assert adapters.persistence.get_unpublished_events(10) == []
    assert adapters.persistence.replay_dead_letters(10) == 1
    stored = adapters.persistence.get_events("r1")[0]
    assert (stored.retry_count, stored.dlq_at) == (0, None)
    assert [x.id for x in adapters.persistence.get_unpublished_events(10)] == [e.id]
    assert adapters.persistence.replay_dead_letters(10) == 0


def test_replay_dead_letters_respects_limit(adapters):
    adapters.run("r1")
    c = adapters.clock
    adapters.persistence.append_events([event("r1", "a", c), event("r1", "b", c)], "c")
    for e in adapters.persistence.get_events("r1"):
        adapters.persistence.record_event_failure(e.id, 1, c.now())
    assert adapters.persistence.replay_dead_letters(1) == 1
    assert [e.event_type for e in adapters.persistence.get_unpublished_events(10)] == ["a"]


def test_a_failure_keeps_its_error_and_replay_takes_chosen_events(adapters):
    adapters.run("r1")
    c = adapters.clock
    adapters.persistence.append_events([event("r1", "a", c), event("r1", "b", c)], "c")
    first, second = adapters.persistence.get_events("r1")
    assert adapters.persistence.record_event_failure(first.id, 1, c.now(), "ValueError: no") is True
    assert adapters.persistence.record_event_failure(second.id, 1, c.now(), "KeyError: 'x'") is True
    assert [e.last_error for e in adapters.persistence.get_events("r1")] == ["ValueError: no", "KeyError: 'x'"]
    assert adapters.persistence.replay_dead_letters(10, [second.id, 987654]) == 1
    assert [e.dlq_at is None for e in adapters.persistence.get_events("r1")] == [False, True]
    assert adapters.persistence.replay_dead_letters(10, []) == 0


def test_record_failure_of_unknown_event_is_false(adapters):
    assert adapters.persistence.record_event_failure(987654, 1, adapters.now()) is False


# -- idempotency --------------------------------------------------------------------------------------------
def test_idempotency_acquire_then_in_progress(adapters):
    p, now = adapters.persistence, adapters.now()
    assert p.acquire_idempotency_key("k", "run.create", now, None).state == "acquired"
    assert p.acquire_idempotency_key("k", "run.create", now, None).state == "in_progress"


def test_idempotency_completed_key_replays(adapters):
    p, now = adapters.persistence, adapters.now()
    p.acquire_idempotency_key("k", "run.create", now, None)
    p.complete_idempotency_key("k", "run.create", {"run_id": "r1"})
    claim = p.acquire_idempotency_key("k", "run.create", now, None)
    assert (claim.state, claim.result) == ("replay", {"run_id": "r1"})


def test_idempotency_release_allows_reacquire(adapters):
    p, now = adapters.persistence, adapters.now()
    p.acquire_idempotency_key("k", "run.create", now, None)
    p.release_idempotency_key("k", "run.create")
    assert p.acquire_idempotency_key("k", "run.create", now, None).state == "acquired"


def test_idempotency_scoped_by_command_type(adapters):
    p, now = adapters.persistence, adapters.now()
    assert p.acquire_idempotency_key("k", "run.create", now, None).state == "acquired"
    assert p.acquire_idempotency_key("k", "run.cancel", now, None).state == "acquired"


def test_idempotency_stale_reclaim(adapters):
    p = adapters.persistence
    p.acquire_idempotency_key("k", "t", adapters.now(), 60)
    later = adapters.clock.advance(seconds=59)
    assert p.acquire_idempotency_key("k", "t", later, None).state == "in_progress"  # no option: never stale
    assert p.acquire_idempotency_key("k", "t", later, 60).state == "in_progress"  # before the threshold
    reclaim_at = adapters.clock.advance(seconds=1)
    assert p.acquire_idempotency_key("k", "t", reclaim_at, 60).state == "acquired"
    # The reclaim restarted the marker's clock: a second caller right after is not let in.
    assert p.acquire_idempotency_key("k", "t", reclaim_at, 60).state == "in_progress"


def test_idempotency_completed_key_is_never_reclaimed(adapters):
    p = adapters.persistence
    p.acquire_idempotency_key("k", "t", adapters.now(), 1)
    p.complete_idempotency_key("k", "t", [1, 2])
    claim = p.acquire_idempotency_key("k", "t", adapters.clock.advance(hours=1), 1)
    assert (claim.state, claim.result) == ("replay", [1, 2])


# -- annotations --------------------------------------------------------------------------------------------
def note(key, value=None, **fields):
    return AnnotationRecord(id=0, run_id=fields.pop("run_id", "r1"), key=key, value=value, **fields)


def test_append_annotations_returns_written_rows(adapters):
    adapters.run("r1")
    stage = adapters.stage("r1", "a")
    written = adapters.persistence.append_annotations(
        [
            note(
                "decision.outcome",
                "approve",
                scope="stage",
                scope_id="a",
                stage_pk=stage.id,
                actor_kind="user",
                actor_id="u1",
                payload={"why": "ok"},
                attempt=2,
            )
        ],
        adapters.now(),
    )
    [row] = written
    assert row.id > 0
    assert (row.key, row.value, row.stage_pk, row.payload, row.attempt) == (
        "decision.outcome",
        "approve",
        stage.id,
        {"why": "ok"},
        2,
    )
    assert row.created_at == adapters.now()
    assert adapters.persistence.list_annotations("r1", {}) == written


def test_annotations_dedupe_on_idempotency_key(adapters):
    adapters.run("r1")
    p = adapters.persistence
    assert len(p.append_annotations([note("k", 1, idempotency_key="i1")], adapters.now())) == 1
    assert p.append_annotations([note("k", 2, idempotency_key="i1")], adapters.now()) == []
    # Same batch duplicate, and a different key with the same idempotency key.
    written = p.append_annotations(
        [
            note("k", 3, idempotency_key="i2"),
            note("k", 4, idempotency_key="i2"),
            note("other", 5, idempotency_key="i1"),
        ],
        adapters.now(),
    )
    assert [(a.key, a.value) for a in written] == [("k", 3), ("other", 5)]
    assert [a.value for a in p.list_annotations("r1", {"key": "k"})] == [1, 3]


def test_annotations_without_idempotency_key_never_collide(adapters):
    adapters.run("r1")
    p = adapters.persistence
    p.append_annotations([note("k", 1), note("k", 1)], adapters.now())
    p.append_annotations([note("k", 1)], adapters.now())
    assert len(p.list_annotations("r1", {})) == 3


def test_annotation_filters(adapters):
    adapters.run("r1")
    adapters.run("r2")
    p, c = adapters.persistence, adapters.clock
    t0 = c.now()
    p.append_annotations(
        [note("decision.outcome", 1, scope="stage", scope_id="a", actor_id="u1", actor_kind="user")], t0
    )
    t1 = c.advance(seconds=1)
    p.append_annotations([note("decision.reason", 2, attempt=1, actor_kind="agent")], t1)
    t2 = c.advance(seconds=1)
    p.append_annotations([note("trigger.fired", 3), note("decision.outcome", 9, run_id="r2")], t2)

    def values(**filters):
        return [a.value for a in p.list_annotations("r1", filters)]

    assert values() == [1, 2, 3]
    assert values(key="decision.outcome") == [1]
    assert values(key_prefix="decision.") == [1, 2]
    assert values(key="trigger.fired", key_prefix="decision.") == [3]  # key wins over key_prefix
    assert values(scope="stage") == [1]
    assert values(scope_id="a") == [1]
    assert values(actor_id="u1") == [1]
    assert values(actor_kind="agent") == [2]
    assert values(attempt=1) == [2]
    assert values(since=t1) == [2, 3]
    assert values(until=t1) == [1, 2]
    assert values(since=t1, until=t1) == [2]
    assert values(limit=2) == [1, 2]
    assert [a.value for a in p.list_annotations("r2", {})] == [9]


# -- transactions -------------------------------------------------------------------------------------------
class Boom(Exception):
    pass


def test_atomic_rollback_undoes_runs_stages_jobs_and_outbox(adapters):
    adapters.run("keep")

    def write_then_fail():
        with adapters.persistence.atomic():
            adapters.run("r1")
            adapters.stage("r1", "a")
            adapters.persistence.update_run("keep", {"priority": 1}, adapters.now())
            adapters.jobs.enqueue([NewJob(run_id="r1", workflow_id="wf", stage_id="a")], adapters.now())
            adapters.persistence.append_events([event("r1", "x", adapters.clock)], "c")
            adapters.persistence.acquire_idempotency_key("k", "t", adapters.now(), None)
            raise Boom

    with pytest.raises(Boom):
        write_then_fail()
    assert adapters.persistence.get_run("r1") is None
    assert adapters.persistence.get_stages("r1") == []
    assert adapters.jobs.jobs_for_run("r1") == []
    assert adapters.persistence.get_events("r1") == []
    assert adapters.persistence.get_run("keep").priority == 5
    assert adapters.persistence.acquire_idempotency_key("k", "t", adapters.now(), None).state == "acquired"


def test_nested_atomic_is_a_savepoint(adapters):
    def inner_fails():
        with adapters.persistence.atomic():
            adapters.run("inner")
            raise Boom

    with adapters.persistence.atomic():
        adapters.run("outer")
        with pytest.raises(Boom):
            inner_fails()
    assert adapters.persistence.get_run("outer") is not None
    assert adapters.persistence.get_run("inner") is None
