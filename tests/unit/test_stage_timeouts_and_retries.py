"""Stage timeouts and retry policies on the in-memory kernel (the stage code runs on pytest's main thread)."""

from __future__ import annotations

import random
import signal
import threading
import time
from datetime import timedelta

import pytest
from pydantic import BaseModel

from django_workflow_engine import NonRetryableError, RetryPolicy, WorkflowBuilder, define_stage
from django_workflow_engine.errors import WorkflowDefinitionError
from django_workflow_engine.kernel import KernelOptions
from django_workflow_engine.testing import MemoryHarness
from tests.flows_timeouts import async_sleepy, sleepy


class In(BaseModel):
    kind: str = ""


def _stage(harness, run_id, stage_id):
    return harness.persistence.get_stage(run_id, stage_id)


def _job(harness, run_id):
    (job,) = harness.jobs.jobs_for_run(run_id)
    return job


def test_a_sleeping_stage_is_interrupted_at_its_timeout():
    harness = MemoryHarness([sleepy])
    run_id = harness.start("sleepy", {"seconds": 3600})
    outer_timer, _ = signal.getitimer(signal.ITIMER_REAL)  # pytest-timeout's, when it uses SIGALRM
    began = time.monotonic()
    harness.run_until_idle()
    assert time.monotonic() - began < 30
    stage = _stage(harness, run_id, "nap")
    assert stage.status == "FAILED"
    assert "timed out after 2 s" in stage.error_message
    assert harness.persistence.get_run(run_id).status == "FAILED"
    remaining, _ = signal.getitimer(signal.ITIMER_REAL)
    if outer_timer:
        assert outer_timer - 10 < remaining < outer_timer  # the outer timer goes on
    else:
        assert remaining == 0  # no timer left behind
    # The next run on the same process is not disturbed.
    quick = harness.start("sleepy", {"seconds": 0, "label": "ok"})
    harness.run_until_idle()
    assert harness.persistence.get_run(quick).status == "COMPLETED"


def test_an_async_stage_is_cancelled_and_retried_by_its_policy():
    harness = MemoryHarness([async_sleepy])
    run_id = harness.start("async-sleepy", {"seconds": 3600})
    harness.run_until_idle()
    job = _job(harness, run_id)
    assert (job.status, job.attempt) == ("FAILED", 2)  # max_attempts=2: retried once, then failed for good
    assert "Stage 'async_nap' timed out after 1 s" in job.last_error


def test_a_thread_that_cannot_be_interrupted_has_its_late_result_discarded():
    harness = MemoryHarness([sleepy])
    run_id = harness.start("sleepy", {"seconds": 2.3, "label": "late"})
    worker = threading.Thread(target=harness.run_until_idle)  # no SIGALRM off the main thread
    worker.start()
    worker.join(30)
    stage = _stage(harness, run_id, "nap")
    assert stage.status == "FAILED"
    assert "timed out after 2 s" in stage.error_message
    assert stage.output_data is None


def test_a_previous_process_timer_is_kept_and_restored():
    fired = []
    outer_timer, _ = signal.getitimer(signal.ITIMER_REAL)
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(time.monotonic()))
    try:
        signal.setitimer(signal.ITIMER_REAL, 4.0)
        harness = MemoryHarness([sleepy])
        run_id = harness.start("sleepy", {"seconds": 0.1, "label": "quick"})
        harness.run_until_idle()
        assert harness.persistence.get_run(run_id).status == "COMPLETED"
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 3.0 < remaining <= 4.0  # RQ's own job timer, say, still runs
        assert not fired
    finally:
        signal.signal(signal.SIGALRM, previous)
        signal.setitimer(signal.ITIMER_REAL, outer_timer)


def test_stage_timeout_default_from_options():
    @define_stage(id="slow", name="Slow", input=In)
    def slow(ctx):
        time.sleep(60)

    flow = WorkflowBuilder("slow-default", "Slow", input=In).pipe(slow).build()
    harness = MemoryHarness(
        [flow], options=KernelOptions(retry_base_seconds=0, stage_timeout_seconds=0.5, max_attempts=1)
    )
    run_id = harness.start("slow-default", {})
    harness.run_until_idle()
    assert "timed out after 0.5 s" in _stage(harness, run_id, "slow").error_message


class Flaky(Exception):
    pass


class Fatal(Exception):
    pass


def _raising_flow(policy: RetryPolicy):
    @define_stage(id="raiser", name="Raiser", input=In, retry=policy)
    def raiser(ctx):
        if ctx.input.kind == "flaky":
            raise Flaky("try again")
        if ctx.input.kind == "fatal":
            raise Fatal("no point")
        if ctx.input.kind == "non-retryable":
            raise NonRetryableError("the document is empty")
        raise KeyError("other")

    return WorkflowBuilder("raising", "Raising", input=In).pipe(raiser).build()


@pytest.mark.parametrize(
    ("policy", "kind", "attempts"),
    [
        (RetryPolicy(max_attempts=3), "flaky", 3),
        (RetryPolicy(max_attempts=3), "non-retryable", 1),
        (RetryPolicy(max_attempts=3, dont_retry_on=(Fatal,)), "fatal", 1),
        (RetryPolicy(max_attempts=3, dont_retry_on=(Fatal,)), "flaky", 3),
        (RetryPolicy(max_attempts=3, retry_on=(Flaky,)), "flaky", 3),
        (RetryPolicy(max_attempts=3, retry_on=(Flaky,)), "other", 1),
        (RetryPolicy(max_attempts=3, retry_on=Flaky), "non-retryable", 1),
    ],
)
def test_which_exceptions_are_retried(policy, kind, attempts):
    harness = MemoryHarness([_raising_flow(policy)])
    run_id = harness.start("raising", {"kind": kind})
    harness.run_until_idle()
    job = _job(harness, run_id)
    assert (job.status, job.attempt) == ("FAILED", attempts)
    assert harness.persistence.get_run(run_id).status == "FAILED"


def test_failed_attempts_store_type_message_and_traceback():
    harness = MemoryHarness([_raising_flow(RetryPolicy(max_attempts=2))])
    run_id = harness.start("raising", {"kind": "flaky"})
    harness.run_until_idle()
    errors = [log for log in harness.persistence.get_logs(run_id) if log.level == "ERROR"]
    assert len(errors) == 2  # one per attempt
    for log in errors:
        assert log.metadata["error_type"] == "tests.unit.test_stage_timeouts_and_retries.Flaky"
        assert "Flaky: try again" in log.message
        assert 'raise Flaky("try again")' in log.metadata["traceback"]


def test_backoff_grows_to_the_max_interval_with_jitter_below_it():
    harness = MemoryHarness(
        [_raising_flow(RetryPolicy(max_attempts=6, backoff_base=10, max_interval=30, jitter=0.5))],
        options=KernelOptions(retry_base_seconds=1),
    )
    run_id = harness.start("raising", {"kind": "flaky"})
    waits = []
    for _ in range(5):
        harness.drain()
        job = _job(harness, run_id)
        waits.append((job.available_at - harness.clock.now()).total_seconds())
        harness.clock.advance(timedelta(seconds=31))
    ceilings = [10, 20, 30, 30, 30]
    for wait, ceiling in zip(waits, ceilings, strict=True):
        assert ceiling * 0.5 <= wait <= ceiling


def test_delay_without_jitter_is_exact_and_capped():
    defaults = RetryPolicy(backoff_base=2, max_interval=300, jitter=0)
    waits = [RetryPolicy().delay(n, defaults).total_seconds() for n in range(1, 11)]
    assert waits == [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    jittered = RetryPolicy(jitter=1).delay(3, defaults, random.Random(7)).total_seconds()
    assert 0 <= jittered < 8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout": 0}, "timeout must be a positive number of seconds, got 0"),
        ({"timeout": -3}, "timeout must be a positive number of seconds, got -3"),
        ({"timeout": float("nan")}, "timeout must be a positive number of seconds, got nan"),
        ({"timeout": timedelta(0)}, "timeout must be a positive number of seconds"),
        ({"timeout": "10"}, "timeout must be a number of seconds or a timedelta, got str '10'"),
        ({"retry": {"max_attempts": 3}}, "retry= must be a RetryPolicy"),
        ({"retry": RetryPolicy(max_attempts=2), "max_attempts": 3}, "max_attempts=3 disagrees with its retry policy"),
    ],
)
def test_bad_stage_limits_name_the_stage(kwargs, message):
    with pytest.raises(WorkflowDefinitionError, match="Stage 'bad'") as info:
        define_stage(id="bad", name="Bad", **kwargs)(lambda ctx: None)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be a positive integer"),
        ({"max_attempts": 2.5}, "max_attempts must be a positive integer"),
        ({"backoff_base": -1}, "backoff_base must be a number of seconds >= 0"),
        ({"max_interval": float("nan")}, "max_interval must be a number of seconds >= 0"),
        ({"jitter": 1.5}, "jitter must be a fraction between 0 and 1"),
        ({"retry_on": (ValueError, "KeyError")}, "retry_on must hold exception classes"),
        ({"dont_retry_on": [42]}, "dont_retry_on must hold exception classes"),
    ],
)
def test_bad_retry_policies(kwargs, message):
    with pytest.raises(WorkflowDefinitionError, match="RetryPolicy") as info:
        RetryPolicy(**kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("STAGE_TIMEOUT_SECONDS", 0),
        ("STAGE_TIMEOUT_SECONDS", -1),
        ("STAGE_TIMEOUT_SECONDS", float("nan")),
        ("STAGE_TIMEOUT_SECONDS", "30"),
        ("RETRY_MAX_INTERVAL_SECONDS", 0),
        ("RETRY_MAX_INTERVAL_SECONDS", float("inf")),
        ("RETRY_JITTER", 1.5),
        ("RETRY_JITTER", -0.1),
        ("RETRY_JITTER", True),
    ],
)
def test_manage_py_check_names_a_bad_time_setting(settings, setting, value):
    from django_workflow_engine.checks import check_settings

    settings.WORKFLOW_ENGINE = {setting: value}
    errors = check_settings(None)
    assert [e.id for e in errors] == ["django_workflow_engine.E035"]
    assert setting in errors[0].msg


def test_good_time_settings_pass_the_checks(settings):
    from django_workflow_engine.checks import check_settings

    settings.WORKFLOW_ENGINE = {"STAGE_TIMEOUT_SECONDS": 600, "RETRY_MAX_INTERVAL_SECONDS": None, "RETRY_JITTER": 0.3}
    assert check_settings(None) == []


def test_a_stage_over_its_cluster_limit_is_deferred_without_spending_an_attempt():
    from tests.flows_limits import gpu_pair

    harness = MemoryHarness([gpu_pair])
    first, second, third = (harness.start("gpu-pair", {"customer": c}) for c in "abc")
    harness.drain(max_jobs=3)  # every run is now at its render stage
    # Two workers elsewhere hold render for the first two runs.
    held = []
    for _ in range(2):
        job = harness.jobs.dequeue("elsewhere", harness.clock.now())
        stage = harness.persistence.get_stage(job.run_id, "render")
        harness.persistence.update_stage(stage.id, {"status": "RUNNING"}, harness.clock.now())
        held.append(job)
    assert {j.run_id for j in held} == {first, second}

    harness.drain()
    (job,) = harness.jobs.jobs_for_run(third)[1:]
    assert (job.status, job.attempt) == ("PENDING", 0)  # deferred, its attempt given back
    assert job.available_at == harness.clock.now() + timedelta(seconds=1)
    assert harness.persistence.get_stage(third, "render").status == "PENDING"

    from django_workflow_engine.kernel import run_job

    run_job(harness.kernel, held[0])  # one slot frees
    harness.clock.advance(timedelta(seconds=1))
    harness.run_until_idle()
    assert harness.persistence.get_run(third).status == "COMPLETED"
    assert harness.persistence.get_run(second).status == "RUNNING"  # still held elsewhere


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", True])
def test_bad_max_concurrent_names_the_stage(value):
    with pytest.raises(WorkflowDefinitionError, match="Stage 'bad': max_concurrent must be a positive integer"):
        define_stage(id="bad", name="Bad", max_concurrent=value)(lambda ctx: None)


def test_a_suspended_stage_past_its_runs_deadline_is_no_longer_polled():
    from django_workflow_engine import NotReady, Suspend, define_async_batch_stage
    from django_workflow_engine.kernel import ExpireDeadlines

    polls = []

    def check(state, ctx):
        polls.append(1)
        return NotReady()

    @define_async_batch_stage(id="wait", name="Wait", input=In, check_completion=check)
    def wait(ctx):
        return Suspend(state={"batch": 1}, poll_interval=10)

    flow = WorkflowBuilder("waits", "Waits", input=In, timeout=timedelta(minutes=1)).pipe(wait).build()
    harness = MemoryHarness([flow])
    run_id = harness.start("waits", {})
    harness.run_until_idle()
    assert harness.persistence.get_stage(run_id, "wait").status == "SUSPENDED"
    harness.clock.advance(timedelta(seconds=30))
    harness.run_until_idle()
    assert len(polls) == 1  # polled while the run had time

    harness.clock.advance(timedelta(seconds=31))
    assert harness.dispatch(ExpireDeadlines()).failed == 1
    run = harness.persistence.get_run(run_id)
    assert run.status == "FAILED"
    assert run.output["error"]["code"] == "DEADLINE_EXCEEDED"
    assert harness.persistence.get_stage(run_id, "wait").status == "CANCELLED"
    assert {j.status for j in harness.jobs.jobs_for_run(run_id)} == {"CANCELLED"}
    harness.clock.advance(timedelta(minutes=5))
    harness.run_until_idle()
    assert len(polls) == 1  # never polled again
    assert harness.dispatch(ExpireDeadlines()).failed == 0  # nothing left to expire
