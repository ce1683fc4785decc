"""Arguments beyond what the databases store are refused up front, each with an error naming the field, and
nothing is written; idempotency keys of deleted runs are free again and keys expire."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import BaseModel, ConfigDict

from django_workflow_engine import WorkflowBuilder, define_stage
from django_workflow_engine.errors import (
    IdempotencyInProgressError,
    InvalidConfig,
    InvalidIdempotencyKey,
    InvalidInput,
    InvalidMaxCost,
    InvalidMetadata,
    InvalidPriority,
    InvalidReason,
    InvalidWorkflowId,
    RunNotFound,
    WorkflowEngineError,
)
from django_workflow_engine.kernel import CancelRun, CreateRun, ExpireIdempotencyKeys, RerunFrom

pytestmark = pytest.mark.django_db


class Doc(BaseModel):
    text: str
    count: int = 0


class Cfg(BaseModel):
    temperature: float = 0.5


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")
    temperature: float = 0.5


@define_stage(id="read", name="Read", input=Doc, config=Cfg)
def read(ctx):
    return {"chars": len(ctx.input.text), "temperature": ctx.config.temperature}


@define_stage(id="loose", name="Loose", config=Loose)
def loose(ctx):
    return {"extra": ctx.config.model_extra}


reader = WorkflowBuilder("reader", "Reader", input=Doc).pipe(read).build()
untyped = WorkflowBuilder("untyped", "Untyped").pipe(define_stage(id="s", name="S", execute=lambda c: {})).build()
loose_flow = WorkflowBuilder("loose", "Loose").pipe(loose).build()


@pytest.fixture
def h(make_kernel):
    return make_kernel([reader, untyped, loose_flow])


def _nested(depth: int) -> dict:
    root: dict = {}
    node = root
    for _ in range(depth):
        node["n"] = {}
        node = node["n"]
    return root


def _assert_nothing_written(h) -> None:
    assert h.run_count() == 0
    assert h.event_count() == 0
    assert h.idempotency_key_count() == 0


BAD_METADATA = [
    ({"note": "a\x00b"}, "field note: contains a NUL"),
    ({"score": float("nan")}, "field score: is nan"),
    ({"score": float("inf")}, "field score: is inf"),
    ({"who": "\ud83d"}, "lone surrogate"),
    ({"tags": {"a", "b"}}, "field tags: is a set"),
    ({"\x00key": 1}, "NUL"),
    ({1: "int key"}, "non-string key"),
    ({"big": 10**5000}, "more than 4300 digits"),
    (_nested(100), "nested more than 64 levels"),
    ({"blob": "x" * (64 * 1024)}, "the limit is 65536"),
    ("just a string", "must be a JSON object"),
    (["a", "list"], "must be a JSON object"),
]


@pytest.mark.parametrize(("metadata", "message"), BAD_METADATA)
def test_bad_metadata_is_refused_naming_the_field(h, metadata, message):
    with pytest.raises(InvalidMetadata, match=message) as info:
        h.dispatch(CreateRun(workflow_id="reader", input={"text": "x"}, metadata=metadata, idempotency_key="k"))
    assert info.value.field == "metadata"
    assert str(info.value).startswith("Invalid metadata: ")
    _assert_nothing_written(h)


def test_good_metadata_is_stored(h):
    metadata = {"user": "ann", "tags": ["a", "b"], "n": 10**30, "nested": _nested(60)}
    run_id = h.start("reader", {"text": "x"}, metadata=metadata)
    assert h.run(run_id).metadata == metadata


@pytest.mark.parametrize(
    ("priority", "message"),
    [
        (2**31, "between -2147483648 and 2147483647"),
        (-(2**31) - 1, "between -2147483648 and 2147483647"),
        pytest.param(10**5000, "an integer of 16610 bits", id="huge"),
        ("5", "must be an integer"),
        (True, "must be an integer"),
        (1.5, "must be an integer"),
    ],
)
def test_priority_outside_the_column_is_refused(h, priority, message):
    with pytest.raises(InvalidPriority, match=message) as info:
        h.dispatch(CreateRun(workflow_id="reader", input={"text": "x"}, priority=priority))
    assert info.value.field == "priority"
    _assert_nothing_written(h)


def test_priority_limits_themselves_are_stored(h):
    high = h.start("reader", {"text": "x"}, priority=2**31 - 1)
    low = h.start("reader", {"text": "x"}, priority=-(2**31))
    assert (h.run(high).priority, h.run(low).priority) == (2**31 - 1, -(2**31))


@pytest.mark.parametrize(
    ("max_cost", "message"),
    [
        (1e10, "less than 10000000000"),
        ("10000000000", "less than 10000000000"),
        pytest.param(10**5000, "less than 10000000000", id="huge"),
        (float("nan"), "finite number"),
        ("Infinity", "finite number"),
        (-1, ">= 0"),
        ("cheap", "must be a number"),
        ([1], "must be a number, got list"),
        (True, "must be a number"),
    ],
)
def test_max_cost_outside_the_column_is_refused(h, max_cost, message):
    with pytest.raises(InvalidMaxCost, match=message) as info:
        h.dispatch(CreateRun(workflow_id="reader", input={"text": "x"}, max_cost=max_cost))
    assert info.value.field == "max_cost"
    _assert_nothing_written(h)


def test_largest_max_cost_is_stored(h):
    run_id = h.start("reader", {"text": "x"}, max_cost="9999999999.99")
    assert h.run(run_id).max_cost == Decimal("9999999999.99")


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("k" * 256, "256 characters long; the limit is 255"),
        ("a\x00b", "NUL"),
        ("\udc00", "lone surrogate"),
        ("", "must not be empty"),
        (42, "must be a string, got int"),
    ],
)
def test_bad_idempotency_keys_are_refused(h, key, message):
    with pytest.raises(InvalidIdempotencyKey, match=message) as info:
        h.dispatch(CreateRun(workflow_id="reader", input={"text": "x"}, idempotency_key=key))
    assert info.value.field == "idempotency_key"
    _assert_nothing_written(h)
    run_id = h.start("reader", {"text": "x"})
    h.drain()
    events = h.event_count()
    with pytest.raises(InvalidIdempotencyKey):
        h.dispatch(RerunFrom(run_id, "read", idempotency_key=key))
    assert h.event_count() == events
    assert h.idempotency_key_count() == 0


def test_longest_idempotency_key_works(h):
    first = h.dispatch(CreateRun(workflow_id="reader", input={"text": "x"}, idempotency_key="k" * 255))
    again = h.dispatch(CreateRun(workflow_id="reader", input={"text": "x"}, idempotency_key="k" * 255))
    assert first.run_id == again.run_id
    assert h.run_count() == 1


@pytest.mark.parametrize(
    "payload",
    [{"text": "x", "count": 10**5000}, {"text": "x", "count": -(10**4300)}],
)
def test_integers_json_cannot_hold_are_invalid_input(h, payload):
    with pytest.raises(InvalidInput, match="field count: is an integer of more than 4300 digits"):
        h.start("reader", payload)
    with pytest.raises(InvalidInput, match="more than 4300 digits"):
        h.start("untyped", {"nested": [payload]})
    _assert_nothing_written(h)


@pytest.mark.parametrize("workflow_id", [["reader"], {"id": "reader"}, 7, None])
def test_workflow_id_must_be_a_string(h, workflow_id):
    with pytest.raises(InvalidWorkflowId, match="Invalid workflow_id: must be a string"):
        h.dispatch(CreateRun(workflow_id=workflow_id, input={"text": "x"}, idempotency_key="k"))
    _assert_nothing_written(h)


@pytest.mark.parametrize(
    ("reason", "message"),
    [("stop\x00now", "NUL"), ("\ud800", "lone surrogate"), ("x" * 4001, "the limit is 4000"), (["no"], "list")],
)
def test_bad_cancel_reason_is_refused_and_the_run_keeps_going(h, reason, message):
    run_id = h.start("reader", {"text": "x"})
    events = h.event_count()
    with pytest.raises(InvalidReason, match=message) as info:
        h.dispatch(CancelRun(run_id, reason=reason))
    assert info.value.field == "reason"
    assert h.run(run_id).status == "RUNNING"
    assert h.event_count() == events
    assert h.dispatch(CancelRun(run_id, reason="x" * 4000)).cancelled


@pytest.mark.parametrize("run_id", ["no-such-run", "a\x00b", "\udc00"])
def test_cancel_of_an_unknown_run_raises_run_not_found(h, run_id):
    with pytest.raises(RunNotFound, match="does not exist"):
        h.dispatch(CancelRun(run_id))
    with pytest.raises(RunNotFound):
        h.dispatch(RerunFrom(run_id, "read"))
    assert h.event_count() == 0


def test_cancel_of_a_finished_run_still_returns_false(h):
    run_id = h.start("reader", {"text": "x"})
    h.drain()
    assert h.dispatch(CancelRun(run_id)).cancelled is False


def test_misspelled_config_key_is_refused_naming_stage_and_key(h):
    with pytest.raises(
        InvalidConfig, match=r"stage 'read': unknown config key\(s\) 'temprature'; known keys: temperature"
    ):
        h.start("reader", {"text": "x"}, config={"read": {"temprature": 0.9}})
    _assert_nothing_written(h)


def test_a_config_model_with_extra_allow_keeps_extra_keys(h):
    run_id = h.start("loose", {}, config={"loose": {"mode": "fast"}})
    h.drain()
    assert h.run(run_id).config["loose"] == {"temperature": 0.5, "mode": "fast"}
    assert h.stages(run_id)["loose"].status == "COMPLETED"


def test_every_error_is_a_workflow_engine_error_and_a_value_error():
    for cls in (InvalidMetadata, InvalidPriority, InvalidMaxCost, InvalidIdempotencyKey, InvalidReason):
        assert issubclass(cls, WorkflowEngineError)
        assert issubclass(cls, ValueError)


# -- idempotency keys and deleted runs -------------------------------------------------------------------------


def test_key_of_a_deleted_run_starts_a_new_run(h):
    first = h.dispatch(CreateRun(workflow_id="reader", input={"text": "x"}, idempotency_key="upload-42")).run_id
    h.delete_run(first)
    second = h.dispatch(CreateRun(workflow_id="reader", input={"text": "x"}, idempotency_key="upload-42")).run_id
    assert second != first
    assert h.run(second).status == "PENDING"
    again = h.dispatch(CreateRun(workflow_id="reader", input={"text": "x"}, idempotency_key="upload-42")).run_id
    assert again == second  # the key now points at the new run


def test_discard_keeps_a_key_completed_again_for_another_run(h):
    first = h.dispatch(CreateRun(workflow_id="reader", input={"text": "x"}, idempotency_key="k")).run_id
    assert h.persistence.discard_idempotency_key("k", "run.create", "some-other-run") is False
    assert h.idempotency_key_count() == 1
    assert h.persistence.discard_idempotency_key("k", "run.create", first) is True
    assert h.idempotency_key_count() == 0


def test_in_progress_key_of_a_deleted_run_still_blocks(h):
    h.persistence.acquire_idempotency_key("busy", "run.create", h.clock.now(), 600)
    with pytest.raises(IdempotencyInProgressError):
        h.dispatch(CreateRun(workflow_id="reader", input={"text": "x"}, idempotency_key="busy"))


def test_keys_expire_in_bounded_batches_oldest_first(h):
    for i in range(5):
        h.dispatch(CreateRun(workflow_id="reader", input={"text": "x"}, idempotency_key=f"k{i}"))
        h.clock.advance(seconds=60)
    # now: k0 is 300 s old ... k3 120 s, k4 60 s
    assert h.dispatch(ExpireIdempotencyKeys(older_than_seconds=100, max_keys=2)).expired == 2
    assert not h.has_idempotency_key("k0", "run.create")
    assert not h.has_idempotency_key("k1", "run.create")
    assert h.has_idempotency_key("k2", "run.create")
    assert h.dispatch(ExpireIdempotencyKeys(older_than_seconds=100, max_keys=2)).expired == 2
    assert h.dispatch(ExpireIdempotencyKeys(older_than_seconds=100, max_keys=2)).expired == 0
    assert [h.has_idempotency_key(f"k{i}", "run.create") for i in range(5)] == [False] * 4 + [True]
    runs = h.run_count()
    h.dispatch(CreateRun(workflow_id="reader", input={"text": "x"}, idempotency_key="k0"))
    assert h.run_count() == runs + 1  # an expired key no longer deduplicates
