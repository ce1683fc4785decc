"""The start path through the public API: the engine's kernel is built once, rebuilt on a settings change."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_workflow_engine import engine
from django_workflow_engine.errors import InvalidInput, WorkflowEngineError
from django_workflow_engine.kernel import CreateRun
from django_workflow_engine.models import IdempotencyKey, OutboxEvent, WorkflowJob, WorkflowRun, WorkflowStage
from tests import flows

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _reset():
    flows.reset()
    yield
    flows.reset()


def test_kernel_is_built_once_per_engine():
    kernel = engine.kernel
    assert engine.kernel is kernel
    engine.start("diamond", {"value": 1})
    assert engine.kernel is kernel


def test_override_settings_takes_effect_and_is_undone():
    before = engine.kernel
    assert before.deps.options.max_input_bytes == 1024 * 1024
    with override_settings(WORKFLOW_ENGINE={"MAX_INPUT_BYTES": 20, "MAX_ATTEMPTS": 7}):
        inside = engine.kernel
        assert inside is not before
        assert (inside.deps.options.max_input_bytes, inside.deps.options.max_attempts) == (20, 7)
        with pytest.raises(InvalidInput, match="limit is 20"):
            engine.start("diamond", {"value": 1234567890123456789012345})
        assert not WorkflowRun.objects.exists()
    after = engine.kernel
    assert after is not inside
    assert after.deps.options.max_input_bytes == 1024 * 1024
    assert engine.start("diamond", {"value": 1234567890123456789012345}).status == "RUNNING"


def test_settings_fixture_changes_rebuild_the_kernel(settings):
    settings.WORKFLOW_ENGINE = {"TRANSPORT": "database"}
    assert engine.kernel.deps.jobs.on_enqueue is None
    settings.WORKFLOW_ENGINE = {"TRANSPORT": "rq"}
    assert engine.kernel.deps.jobs.on_enqueue is not None


# -- the start path: what is written, what is returned ---------------------------------------------------------


def _model_fields(run: WorkflowRun) -> dict:
    return {f.attname: getattr(run, f.attname) for f in WorkflowRun._meta.concrete_fields}


@pytest.mark.parametrize("call", ["start", "create", "start_keyed"])
def test_returned_run_is_the_stored_row_without_reading_it_back(call):
    kwargs = {"idempotency_key": "k-returned"} if call == "start_keyed" else {}
    method = engine.create if call == "create" else engine.start
    with CaptureQueriesContext(connection) as ctx:
        run = method("diamond", {"value": 3}, metadata={"m": [1]}, max_cost="0.5", priority=7, **kwargs)
    assert not [q for q in ctx.captured_queries if q["sql"].startswith("SELECT")]
    stored = WorkflowRun.objects.get(pk=run.pk)
    returned = _model_fields(run)  # reads the deferred event_seq (one query), as any later access would
    assert returned == _model_fields(stored)
    assert run.event_seq == stored.event_seq == (2 if call != "create" else 1)
    assert list(OutboxEvent.objects.filter(run_id=run.id).values_list("sequence", flat=True)) == list(
        range(1, stored.event_seq + 1)
    )


def test_saving_the_returned_run_keeps_its_outbox_counter():
    run = engine.start("diamond", {"value": 1})
    run.metadata = {"edited": True}
    run.save()
    stored = WorkflowRun.objects.get(pk=run.pk)
    assert (stored.metadata, stored.event_seq) == ({"edited": True}, 2)


def test_replayed_start_returns_the_first_run():
    first = engine.start("diamond", {"value": 1}, idempotency_key="k-replay")
    again = engine.start("diamond", {"value": 1}, idempotency_key="k-replay")
    assert again.pk == first.pk
    assert _model_fields(again) == _model_fields(WorkflowRun.objects.get(pk=first.pk))
    assert IdempotencyKey.objects.get(key="k-replay").result == {"run_id": first.id, "status": "RUNNING"}


def test_an_existing_run_id_is_refused_and_nothing_more_is_written():
    run = engine.start("diamond", {"value": 1})
    counts = (WorkflowStage.objects.count(), WorkflowJob.objects.count(), OutboxEvent.objects.count())
    with pytest.raises(WorkflowEngineError, match="already exists"):
        engine.kernel.dispatch(CreateRun(workflow_id="diamond", input={"value": 2}, run_id=run.id, start=True))
    assert (WorkflowStage.objects.count(), WorkflowJob.objects.count(), OutboxEvent.objects.count()) == counts
    assert WorkflowRun.objects.get(pk=run.pk).input == {"value": 1}


def _sent(ctx: CaptureQueriesContext) -> list[str]:
    """Statements sent, without transaction control (in a test, the engine's transaction is a savepoint)."""
    control = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")
    return [q["sql"] for q in ctx.captured_queries if not q["sql"].startswith(control)]


@pytest.mark.postgres
@pytest.mark.parametrize(("call", "statements"), [("start", 1), ("create", 1), ("start_keyed", 2)])
def test_a_start_on_postgresql_is_one_statement(call, statements):
    """The run, its first group's stage records and jobs, its events (and the key's result) in one statement;
    a key costs its own INSERT before it."""
    engine.start("diamond", {"value": 0})  # the first start of a connection may prepare statements
    kwargs = {"idempotency_key": "k-statements"} if call == "start_keyed" else {}
    method = engine.create if call == "create" else engine.start
    with CaptureQueriesContext(connection) as ctx:
        run = method("diamond", {"value": 1}, **kwargs)
    sent = _sent(ctx)
    assert len(sent) == statements, sent
    assert sent[-1].startswith("WITH ")
    assert len([q for q in ctx.captured_queries if q["sql"].startswith("SAVEPOINT")]) == (
        1 if call != "start_keyed" else 2
    )
    assert WorkflowStage.objects.filter(run=run).count() == (1 if call != "create" else 0)
    assert WorkflowJob.objects.filter(run=run, status="PENDING").count() == (1 if call != "create" else 0)


# -- start_many -------------------------------------------------------------------------------------------------


def test_start_many_starts_one_run_per_input_in_order():
    runs = engine.start_many("diamond", [{"value": n} for n in range(5)], priority=8, batch_size=2)
    assert [r.input for r in runs] == [{"value": n} for n in range(5)]
    assert {(r.status, r.priority) for r in runs} == {("RUNNING", 8)}
    for run in runs:
        assert _model_fields(run) == _model_fields(WorkflowRun.objects.get(pk=run.pk))
        assert list(WorkflowJob.objects.filter(run=run).values_list("stage_id", "status")) == [("a", "PENDING")]
        assert list(OutboxEvent.objects.filter(run_id=run.id).order_by("sequence").values_list("event_type")) == [
            ("workflow:created",),
            ("workflow:started",),
        ]
    engine.run_until_idle()
    assert [WorkflowRun.objects.get(pk=r.pk).output["total"] for r in runs] == [4 * n + 11 for n in range(5)]


def test_start_many_rings_the_doorbell_once_per_batch(settings, monkeypatch, django_capture_on_commit_callbacks):
    from django_workflow_engine.adapters import rq

    settings.WORKFLOW_ENGINE = {"TRANSPORT": "rq"}
    rung = []
    monkeypatch.setattr(rq, "ring", lambda ids, **kwargs: rung.append(list(ids)))
    with django_capture_on_commit_callbacks(execute=True):
        runs = engine.start_many("diamond", [{"value": n} for n in range(5)], batch_size=2)
    jobs = [WorkflowJob.objects.get(run=r).id for r in runs]
    assert rung == [jobs[0:2], jobs[2:4], jobs[4:5]]


def test_one_bad_input_names_its_index_and_field_and_nothing_is_written():
    with pytest.raises(InvalidInput) as caught:
        engine.start_many("diamond", [{"value": 1}, {"value": 2}, {"value": "many"}, {"value": 4}], batch_size=1)
    assert str(caught.value).startswith("inputs[2]: Invalid input for workflow 'diamond': field 'value'")
    assert caught.value.index == 2
    assert not WorkflowRun.objects.exists()
    assert not WorkflowJob.objects.exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"idempotency_keys": ["a"]}, "idempotency_keys has 1 item"),
        ({"idempotency_keys": ["a", "a"]}, r"idempotency_keys\[1\] repeats idempotency_keys\[0\]"),
        ({"idempotency_keys": ["a", ""]}, r"idempotency_keys\[1\] must be a non-empty string"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"priority": "high"}, "Invalid priority: must be an integer"),
        ({"idempotency_keys": ["a", "k" * 256]}, r"idempotency_keys\[1\].*256 characters long; the limit is 255"),
        ({"idempotency_keys": ["a\x00b", None]}, r"idempotency_keys\[0\]"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(kwargs, message):
    with pytest.raises(WorkflowEngineError, match=message):
        engine.start_many("diamond", [{"value": 1}, {"value": 2}], **kwargs)
    assert not WorkflowRun.objects.exists()
    assert not IdempotencyKey.objects.exists()


def test_start_many_keys_are_the_keys_of_start():
    first = engine.start("diamond", {"value": 1}, idempotency_key="key-1")
    runs = engine.start_many("diamond", [{"value": 1}, {"value": 2}], idempotency_keys=["key-1", "key-2"])
    assert runs[0].pk == first.pk
    assert WorkflowRun.objects.count() == 2
    again = engine.start("diamond", {"value": 2}, idempotency_key="key-2")
    assert again.pk == runs[1].pk
    repeat = engine.start_many(
        "diamond",
        [{"value": 1}, {"value": 2}, {"value": 3}],
        idempotency_keys=[
            "key-1",
            "key-2",
            None,
        ],
    )
    assert [r.pk for r in repeat[:2]] == [first.pk, runs[1].pk]
    assert WorkflowRun.objects.count() == 3


def test_unknown_workflow_is_refused_without_an_index():
    from django_workflow_engine.errors import WorkflowNotFound

    with pytest.raises(WorkflowNotFound, match="^Workflow 'nope' is not registered"):
        engine.start_many("nope", [{"value": 1}])


def test_start_many_of_nothing_is_nothing():
    assert engine.start_many("diamond", []) == []


def test_rerun_returns_the_run_as_the_rerun_left_it():
    run = engine.start("diamond", {"value": 5})
    engine.run_until_idle()
    rerun = engine.rerun_from(run.id, "b")
    stored = WorkflowRun.objects.get(pk=run.pk)
    assert (rerun.status, rerun.output, rerun.completed_at) == ("RUNNING", None, None)
    assert _model_fields(rerun) == _model_fields(stored)
    engine.run_until_idle()
    assert WorkflowRun.objects.get(pk=run.pk).output == {"total": 31, "tags": ["b", "c"]}
