"""Django's tasks framework, through its public API, on the engine's backend (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.utils import timezone

from django_workflow_engine import WorkflowEngineError, engine
from django_workflow_engine.models import AICall, WorkflowJob, WorkflowRun
from django_workflow_engine.tasks import TASK_WORKFLOW_ID, InvalidTaskArguments
from django_workflow_engine.tasks.compat import InvalidTask, TaskResultDoesNotExist, TaskResultStatus, task_backends

from . import jobs

pytestmark = pytest.mark.django_db

SUCCESSFUL, FAILED, READY = TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED, TaskResultStatus.READY


def test_the_configured_backend_is_the_engine():
    from django_workflow_engine.tasks import WorkflowEngineBackend

    backend = task_backends["default"]
    assert isinstance(backend, WorkflowEngineBackend)
    assert (backend.supports_defer, backend.supports_get_result, backend.supports_priority) == (True, True, True)


def test_enqueue_then_worker_gives_a_successful_result_with_the_return_value():
    result = jobs.add.enqueue(2, 3)
    assert result.status == READY
    assert (result.args, result.kwargs, result.backend) == ([2, 3], {}, "default")
    assert jobs.add.get_result(result.id).status == READY
    engine.run_until_idle()
    result.refresh()
    assert result.status == SUCCESSFUL
    assert result.return_value == 5
    assert result.errors == []
    assert result.worker_ids == ["in-process"]
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.last_attempted_at == result.started_at
    # The result id is the run's: a durable one-stage run named after the task.
    run = WorkflowRun.objects.get(pk=result.id)
    assert (run.workflow_id, run.workflow_name, run.status) == (TASK_WORKFLOW_ID, "tests.tasks.jobs.add", "COMPLETED")
    assert list(run.stages.values_list("stage_id", "status")) == [("task", "COMPLETED")]


def test_an_exception_fails_the_task_with_its_class_and_traceback(settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, "MAX_ATTEMPTS": 1}
    result = jobs.explode.enqueue("boom")
    engine.run_until_idle()
    result = jobs.explode.get_result(result.id)
    assert result.status == FAILED
    assert len(result.errors) == 1
    error = result.errors[0]
    assert error.exception_class is ValueError
    assert error.exception_class_path == "builtins.ValueError"
    assert "ValueError: boom" in error.traceback
    assert "in explode\n    raise ValueError(message)" in error.traceback
    assert result.finished_at is not None
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value


def test_failed_attempts_are_retried_with_backoff_and_the_context_counts_attempts(settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, "MAX_ATTEMPTS": 3, "RETRY_BASE_SECONDS": 60}
    result = jobs.flaky.enqueue(fail_times=2)
    engine.run_until_idle()
    # The first attempt failed; the retry waits out its backoff: READY again, with the error so far.
    result.refresh()
    assert result.status == READY
    assert [e.exception_class_path for e in result.errors] == ["builtins.RuntimeError"]
    assert "attempt 1 failed" in result.errors[0].traceback
    job = WorkflowJob.objects.get(run_id=result.id)
    assert job.available_at > timezone.now() + timedelta(seconds=50)

    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, "RETRY_BASE_SECONDS": 0}
    WorkflowJob.objects.filter(pk=job.pk).update(available_at=timezone.now())  # skip the wait
    engine.run_until_idle()
    result.refresh()
    assert result.status == SUCCESSFUL
    assert result.return_value == {"attempt": 3, "result_id": result.id, "calls": 3}
    assert len(result.errors) == 2
    assert result.worker_ids == ["in-process"] * 3


def test_retries_exhausted_fail_with_one_error_per_attempt(settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, "MAX_ATTEMPTS": 2}
    result = jobs.flaky.enqueue(fail_times=5)
    engine.run_until_idle()
    result.refresh()
    assert result.status == FAILED
    assert [e.traceback.strip().splitlines()[-1] for e in result.errors] == [
        "RuntimeError: attempt 1 failed",
        "RuntimeError: attempt 2 failed",
    ]
    assert result.attempts == 2


def test_run_after_is_a_job_due_later():
    due = timezone.now() + timedelta(seconds=3)
    result = jobs.add.using(run_after=due).enqueue(1, 1)
    assert result.task.run_after == due
    assert WorkflowJob.objects.get(run_id=result.id).available_at == due
    engine.run_until_idle()
    assert jobs.add.get_result(result.id).status == READY
    time.sleep(max(0.0, (due - timezone.now()).total_seconds()) + 0.05)
    engine.run_until_idle()
    result.refresh()
    assert (result.status, result.return_value) == (SUCCESSFUL, 2)
    assert result.started_at >= due


def test_run_after_must_be_aware():
    with pytest.raises(InvalidTask, match="aware"):
        jobs.add.using(run_after=datetime(2030, 1, 1)).enqueue(1, 1)


def test_higher_priority_runs_first(task_dir):
    jobs.record.using(priority=-10).enqueue("low")
    jobs.record.enqueue("default")
    jobs.record.using(priority=50).enqueue("high")
    engine.run_until_idle()
    assert (task_dir / "order").read_text().split() == ["high", "default", "low"]


def test_priority_is_the_runs_priority():
    result = jobs.send_email.enqueue("a@example.com")
    assert WorkflowRun.objects.get(pk=result.id).priority == 3
    assert jobs.send_email.get_result(result.id).task.priority == 3


def test_a_queue_the_backend_accepts_runs_on_the_engine_queue():
    result = jobs.send_email.enqueue("a@example.com", subject="hi")
    assert result.task.queue_name == "emails"
    engine.run_until_idle()
    result = jobs.send_email.get_result(result.id)
    assert result.return_value == {"to": "a@example.com", "subject": "hi"}
    assert result.task.queue_name == "emails"


def test_an_unknown_queue_is_rejected_clearly_and_nothing_is_written():
    with pytest.raises(InvalidTask, match=r"queue 'reports'.*TASKS\['default'\]\['QUEUES'\]"):
        jobs.add.using(queue_name="reports").enqueue(1, 2)
    assert not WorkflowRun.objects.exists()


@pytest.mark.parametrize(
    ("args", "kwargs", "where"),
    [
        ((timezone.now(),), {}, r"args\[0\] is a datetime"),
        ((1,), {"b": {"nested": {1, 2}}}, r"kwargs\.b\.nested is a set"),
        ((float("nan"), 1), {}, r"args\[0\] is nan"),
    ],
)
def test_arguments_that_are_not_json_are_refused_at_enqueue_and_nothing_is_written(args, kwargs, where):
    with pytest.raises(InvalidTaskArguments, match=rf"task 'tests\.tasks\.jobs\.add': argument {where}") as info:
        jobs.add.enqueue(*args, **kwargs)
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, WorkflowEngineError)
    assert not WorkflowRun.objects.exists()


def test_arguments_larger_than_max_input_bytes_are_refused_naming_the_task(settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, "MAX_INPUT_BYTES": 1000}
    with pytest.raises(InvalidTaskArguments, match=r"task 'tests\.tasks\.jobs\.send_email'.*MAX_INPUT_BYTES"):
        jobs.send_email.enqueue("a@example.com", subject="x" * 2000)
    assert not WorkflowRun.objects.exists()


def test_tuples_are_stored_as_lists():
    result = jobs.send_email.enqueue(to="x", subject=("a", "b"))
    assert result.kwargs == {"to": "x", "subject": ["a", "b"]}
    engine.run_until_idle()
    assert jobs.send_email.get_result(result.id).return_value == {"to": "x", "subject": ["a", "b"]}


def test_a_return_value_that_is_not_json_fails_without_retries(settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, "MAX_ATTEMPTS": 3}
    result = jobs.returns_object.enqueue()
    engine.run_until_idle()
    result.refresh()
    assert result.status == FAILED
    assert [e.exception_class_path for e in result.errors] == ["django_workflow_engine.core.errors.InvalidOutput"]
    assert "returned a value that cannot be stored as JSON" in result.errors[0].traceback


def test_async_task_functions_run():
    result = jobs.async_add.enqueue(20, 22)
    engine.run_until_idle()
    assert jobs.async_add.get_result(result.id).return_value == 42


def test_get_result_of_an_unknown_id_raises_the_frameworks_error():
    with pytest.raises(TaskResultDoesNotExist):
        jobs.add.get_result("0" * 32)
    with pytest.raises(TaskResultDoesNotExist):
        task_backends["default"].get_result("not-an-id")
    # A workflow run is not a task result.
    run = engine.start("triple", {"n": 1})
    with pytest.raises(TaskResultDoesNotExist):
        jobs.add.get_result(run.id)


def test_get_result_of_another_tasks_id_is_a_mismatch():
    from django_workflow_engine.tasks.compat import FRAMEWORK

    mismatch = __import__(f"{FRAMEWORK}.exceptions", fromlist=["TaskResultMismatch"]).TaskResultMismatch
    result = jobs.add.enqueue(1, 2)
    with pytest.raises(mismatch):
        jobs.explode.get_result(result.id)


def test_enqueue_in_a_rolled_back_transaction_leaves_nothing_to_run():
    enqueued = []

    def enqueue_then_fail() -> None:
        with transaction.atomic():
            enqueued.append(jobs.add.enqueue(1, 2))
            assert jobs.add.get_result(enqueued[0].id).status == READY  # visible inside its transaction
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        enqueue_then_fail()
    result = enqueued[0]
    with pytest.raises(TaskResultDoesNotExist):
        jobs.add.get_result(result.id)
    assert engine.run_until_idle().jobs == 0
    assert not WorkflowRun.objects.exists()


def test_cancel_fails_the_task_and_it_never_runs():
    result = jobs.add.enqueue(1, 2)
    assert engine.cancel(result.id)
    assert engine.run_until_idle().jobs == 0
    result.refresh()
    assert result.status == FAILED
    assert [e.exception_class_path for e in result.errors] == ["django_workflow_engine.tasks.TaskCancelled"]
    from django_workflow_engine.tasks import TaskCancelled

    assert result.errors[0].exception_class is TaskCancelled


def test_rerun_of_a_failed_task_runs_it_again(settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, "MAX_ATTEMPTS": 1}
    result = jobs.flaky.enqueue(fail_times=1)
    engine.run_until_idle()
    result.refresh()
    assert result.status == FAILED
    engine.rerun_from(result.id, "task")
    engine.run_until_idle()
    result.refresh()
    assert result.status == SUCCESSFUL
    assert result.return_value["calls"] == 2


def test_task_signals_are_sent():
    from django_workflow_engine.tasks.compat import task_enqueued, task_finished, task_started

    seen = []

    def receiver(sender, task_result, signal, **kwargs):
        seen.append((signal, task_result.id, task_result.status))

    for signal in (task_enqueued, task_started, task_finished):
        signal.connect(receiver)
    try:
        result = jobs.add.enqueue(1, 2)
        engine.run_until_idle()
    finally:
        for signal in (task_enqueued, task_started, task_finished):
            signal.disconnect(receiver)
    assert seen == [
        (task_enqueued, result.id, READY),
        (task_started, result.id, TaskResultStatus.RUNNING),
        (task_finished, result.id, SUCCESSFUL),
    ]


@pytest.mark.django_db(transaction=True)
def test_aenqueue_and_aget_result():
    async def enqueue():
        return await jobs.add.aenqueue(40, 2)

    async def fetch():
        return await jobs.add.aget_result(result.id)

    try:
        result = asyncio.run(enqueue())
        engine.run_until_idle()
        fetched = asyncio.run(fetch())
    finally:
        # The backend ran on asgiref's thread for sync code: close that thread's connection, or the test
        # database cannot be dropped at the end of the session.
        asyncio.run(sync_to_async(connections.close_all)())
    assert (fetched.status, fetched.return_value) == (SUCCESSFUL, 42)


def test_admin_marks_task_runs_and_filters_them(admin_client):
    result = jobs.send_email.enqueue("a@example.com")
    workflow_run = engine.start("triple", {"n": 1})
    page = admin_client.get("/admin/django_workflow_engine/workflowrun/", {"workflow": TASK_WORKFLOW_ID})
    assert page.status_code == 200
    html = page.content.decode()
    assert "task tests.tasks.jobs.send_email" in html
    assert result.id[-8:] in html
    assert workflow_run.id[-8:] not in html
    found = admin_client.get("/admin/django_workflow_engine/workflowrun/", {"q": "tests.tasks.jobs"}).content.decode()
    assert result.id[-8:] in found
    assert workflow_run.id[-8:] not in found


def test_ai_calls_in_a_task_count_against_its_run(mock_ai):
    mock_ai.text("short")
    result = jobs.summarize.enqueue("a long text")
    engine.run_until_idle()
    result.refresh()
    assert (result.status, result.return_value) == (SUCCESSFUL, "short")
    run = WorkflowRun.objects.get(pk=result.id)
    call = AICall.objects.get()
    assert (call.run_id, call.stage.stage_id, call.model_id) == (run.id, "task", "gpt-4o-mini")
    assert run.total_cost == call.cost > 0
    assert run.total_tokens == 30


def test_ai_outside_a_task_says_where_it_works():
    from django_workflow_engine import tasks

    with pytest.raises(WorkflowEngineError, match=r"only available inside a task.*create_ai_helper"):
        tasks.ai()


def test_a_running_task_is_running():
    result = jobs.own_status.enqueue()
    engine.run_until_idle()
    result.refresh()
    assert result.return_value == {"status": "RUNNING", "worker_ids": ["in-process"], "finished": False}


def test_a_task_that_no_longer_imports_fails_with_the_reason(settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, "MAX_ATTEMPTS": 3}
    result = jobs.add.enqueue(1, 2)
    run = WorkflowRun.objects.get(pk=result.id)
    run.input = {**run.input, "task": "tests.tasks.jobs.removed_task"}
    run.save(update_fields=["input"])  # as if the task was deleted between enqueue and execution
    engine.run_until_idle()
    with pytest.raises(WorkflowEngineError, match="'tests.tasks.jobs.removed_task' cannot be imported"):
        jobs.add.get_result(result.id)  # a result needs its Task object
    run.refresh_from_db()
    assert run.status == "FAILED"
    assert run.jobs.get().attempt == 1  # not retried
    log = run.logs.filter(level="ERROR", metadata__has_key="exception_class_path").get()
    assert log.metadata["exception_class_path"] == "django_workflow_engine.core.errors.InvalidInput"
    assert "cannot be imported" in log.metadata["traceback"]
