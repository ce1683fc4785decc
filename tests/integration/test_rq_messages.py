"""What the engine puts in Redis: only job ids, JSON-serialized; nothing is ever unpickled."""

from __future__ import annotations

import json
import os
import zlib

import pytest

from django_workflow_engine import engine
from django_workflow_engine.adapters.rq import JOB_FUNCTION, get_queue
from django_workflow_engine.models import WorkflowJob

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def rq_settings(settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, "TRANSPORT": "rq"}
    queue = get_queue()
    queue.connection.flushdb()
    yield queue
    queue.connection.flushdb()


def test_start_enqueues_one_json_message_per_job_carrying_only_its_id(rq_settings):
    queue = rq_settings
    secret = "top secret document text"
    run = engine.start("triple", {"n": 1, "sleep": 0}, metadata={"note": secret})
    job_ids = list(WorkflowJob.objects.filter(run=run).values_list("id", flat=True))
    assert len(queue) == len(job_ids) == 1
    rq_job = queue.jobs[0]
    assert rq_job.func_name == JOB_FUNCTION
    assert rq_job.args == [job_ids[0]] or list(rq_job.args) == job_ids
    raw = zlib.decompress(queue.connection.hget(rq_job.key, "data"))  # RQ compresses the serialized call
    decoded = json.loads(raw)  # JSON, not a pickle
    assert decoded[0] == JOB_FUNCTION
    assert decoded[2] == [job_ids[0]]
    # nothing from the run's input or config travels through Redis
    for key in queue.connection.keys("*"):
        if queue.connection.type(key) == b"hash":
            for value in queue.connection.hvals(key):
                for blob in (value, _maybe_inflate(value)):
                    assert secret.encode() not in blob
                    assert b'"sleep"' not in blob


def _maybe_inflate(value: bytes) -> bytes:
    try:
        return zlib.decompress(value)
    except zlib.error:
        return value


def test_worker_rejects_pickled_payloads(rq_settings):
    """A pickled job planted in the queue is not executed by the engine's JSON worker."""
    import subprocess
    import sys

    from rq import Queue

    queue = rq_settings
    evil = Queue(queue.name, connection=queue.connection)  # default serializer: pickle
    marker = "/tmp/dwe-pickle-marker"
    if os.path.exists(marker):
        os.unlink(marker)
    evil.enqueue("os.system", f"touch {marker}")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DWE_ENGINE_SETTINGS": json.dumps({"TRANSPORT": "rq"}),
        "PYTHONPATH": os.getcwd(),
    }
    done = subprocess.run(
        [sys.executable, "-m", "django", "runworker", "--burst"], env=env, timeout=60, capture_output=True, check=False
    )
    assert not os.path.exists(marker)
    # the worker did take the planted job (the test would pass vacuously if it never reached it) and refused it
    assert done.returncode == 0, done.stderr[-2000:]
    assert b"DeserializationError" in done.stderr
    assert evil.job_ids == []


def test_a_sibling_taken_by_the_worker_that_rang_it_leaves_no_message_behind(rq_settings, monkeypatch):
    from django_workflow_engine.adapters import rq as doorbell
    from django_workflow_engine.hosts.rq_worker import execute_job_by_id
    from django_workflow_engine.models import WorkflowRun

    queue = rq_settings
    run = engine.start("triple", {"n": 2, "sleep": 0})
    ingest_message = queue.job_ids
    assert len(ingest_message) == 1
    queue.remove(ingest_message[0])  # as RQ does when it delivers it: the queue is empty, so ringing is not quiet
    queue.connection.set("probe", "1")  # a key that must survive
    rung = []
    ring = doorbell.ring
    monkeypatch.setattr(doorbell, "ring", lambda ids, at=None: rung.extend(ids) or ring(ids, at))

    outcome = execute_job_by_id(WorkflowJob.objects.get(run=run, stage_id="ingest").id)  # what RQ calls

    assert outcome.outcome == "completed"
    assert WorkflowRun.objects.get(pk=run.pk).status == "COMPLETED"
    right = WorkflowJob.objects.get(run=run, stage_id="right")
    assert rung == [right.id]  # rung when ingest started the group, then taken by the same worker
    assert (right.status, right.attempt) == ("COMPLETED", 1)
    assert queue.job_ids == []  # the sibling's message was withdrawn
    assert sorted(k.decode() for k in queue.connection.keys("rq:job:*")) == [f"rq:job:{ingest_message[0]}"]
    assert queue.connection.get("probe") == b"1"
    assert doorbell.withdraw([right.id, "never-rung"]) == 0  # nothing this process still knows of


def test_one_message_works_through_the_due_backlog_and_withdraws_its_messages(rq_settings):
    from django_workflow_engine.hosts.rq_worker import execute_job_by_id
    from django_workflow_engine.models import WorkflowRun

    queue = rq_settings
    runs = [engine.start("triple", {"n": n, "sleep": 0}) for n in range(3)]
    first = WorkflowJob.objects.get(run=runs[0], stage_id="ingest").id
    assert queue.job_ids == [first]  # its id is the job's; the other runs were not rung: the queue held it
    queue.remove(first)  # as RQ does when it delivers the message

    outcome = execute_job_by_id(first)

    assert outcome.outcome == "completed"
    assert (
        list(WorkflowRun.objects.filter(pk__in=[r.pk for r in runs]).values_list("status", flat=True))
        == ["COMPLETED"] * 3
    )
    assert queue.job_ids == []
    assert queue.connection.keys("rq:job:*") == [f"rq:job:{first}".encode()]  # RQ deletes the delivered one
    assert set(WorkflowJob.objects.values_list("status", "attempt")) == {("COMPLETED", 1)}


def test_a_message_stops_taking_work_at_half_its_rq_timeout(rq_settings, monkeypatch):
    import rq

    from django_workflow_engine.hosts.rq_worker import execute_job_by_id

    queue = rq_settings
    runs = [engine.start("triple", {"n": n, "sleep": 0}) for n in range(2)]
    first = WorkflowJob.objects.get(run=runs[0], stage_id="ingest").id
    queue.remove(first)
    message = type("Message", (), {"id": first, "timeout": 0.002})()  # 1 ms of budget: spent by the first stage
    monkeypatch.setattr(rq, "get_current_job", lambda: message)

    assert execute_job_by_id(first).outcome == "completed"

    done = dict(WorkflowJob.objects.filter(status="COMPLETED").values_list("run_id", "stage_id"))
    assert done == {runs[0].pk: "ingest"}  # no continuation, no job taken from the database
    pending = set(WorkflowJob.objects.filter(status="PENDING").values_list("stage_id", "run_id"))
    assert pending == {("left", runs[0].pk), ("right", runs[0].pk), ("ingest", runs[1].pk)}
    # left and right were rung (the queue was empty); the second run was not (the queue held the first message)
    assert set(queue.job_ids) == set(
        WorkflowJob.objects.filter(run=runs[0], status="PENDING").values_list("id", flat=True)
    )


def test_new_jobs_are_not_rung_while_the_queue_holds_messages(rq_settings):
    queue = rq_settings
    first = engine.start("triple", {"n": 1, "sleep": 0})
    second = engine.start("triple", {"n": 2, "sleep": 0})  # a worker taking the first message drains it
    assert queue.job_ids == [WorkflowJob.objects.get(run=first, stage_id="ingest").id]
    queue.remove(queue.job_ids[0])
    third = engine.start("triple", {"n": 3, "sleep": 0})
    assert queue.job_ids == [WorkflowJob.objects.get(run=third, stage_id="ingest").id]  # empty queue: rung
    assert WorkflowJob.objects.get(run=second, stage_id="ingest").status == "PENDING"


def test_without_eager_execution_every_job_is_rung(rq_settings, settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, "CONTINUE_IN_WORKER": False}
    queue = rq_settings
    runs = [engine.start("triple", {"n": n, "sleep": 0}) for n in range(2)]
    assert queue.job_ids == [WorkflowJob.objects.get(run=r, stage_id="ingest").id for r in runs]


def test_a_worker_leaving_with_work_due_rings_one_message_for_it(rq_settings):
    from django_workflow_engine.hosts import jobs, rq_worker

    queue = rq_settings
    runs = [engine.start("triple", {"n": n, "sleep": 0}) for n in range(2)]  # the second is not rung
    stale = WorkflowJob.objects.get(run=runs[0], stage_id="ingest")
    stale.status = "CANCELLED"
    stale.save()
    queue.remove(stale.id)
    assert queue.job_ids == []

    jobs.STOPPING.set()  # the worker is asked to stop: it takes nothing from the database
    try:
        assert rq_worker.execute_job_by_id(stale.id) is None
    finally:
        jobs.STOPPING.clear()

    assert queue.job_ids == [WorkflowJob.objects.get(run=runs[1], stage_id="ingest").id]  # announced for others


def test_messages_of_jobs_taken_from_the_database_are_withdrawn_in_batches(rq_settings, settings, monkeypatch):
    from django_workflow_engine.adapters import rq as doorbell
    from django_workflow_engine.hosts.rq_worker import execute_job_by_id

    queue = rq_settings
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, "CONTINUE_IN_WORKER": False}
    runs = [engine.start("triple", {"n": n, "sleep": 0}) for n in range(doorbell.WITHDRAW_BATCH + 4)]
    assert len(queue) == len(runs)  # every run rung
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, "CONTINUE_IN_WORKER": True}
    first = queue.job_ids[0]
    queue.remove(first)
    batches = []
    real_withdraw = doorbell.withdraw
    monkeypatch.setattr(doorbell, "withdraw", lambda ids, **kw: batches.append(list(ids)) or real_withdraw(ids, **kw))

    assert execute_job_by_id(first).outcome == "completed"

    assert set(WorkflowJob.objects.values_list("status", flat=True)) == {"COMPLETED"}
    assert queue.job_ids == []  # every message of a job taken from the database is gone
    # 19 runs taken from the database (several at a time) and 20 siblings taken eagerly: 39 messages withdrawn
    # in at most 3 round trips, each but the last once WITHDRAW_BATCH were waiting
    sizes = [len(ids) for ids in batches if ids]
    assert sum(sizes) == 39
    assert len(sizes) <= 3
    assert all(size >= doorbell.WITHDRAW_BATCH for size in sizes[:-1])


def test_a_job_rung_again_before_its_withdrawal_keeps_its_new_message(rq_settings):
    from django_workflow_engine.adapters import rq as doorbell

    queue = rq_settings
    run = engine.start("triple", {"n": 1, "sleep": 0})
    job_id = WorkflowJob.objects.get(run=run, stage_id="ingest").id
    doorbell.withdraw_later([job_id])  # taken from the database; its message not yet withdrawn

    assert doorbell.ring([job_id]) == 1  # a retry rings it again: the pending withdrawal goes first

    assert doorbell.flush_withdrawals() == 0
    assert queue.job_ids == [job_id]
    assert queue.fetch_job(job_id) is not None


def test_withdrawing_a_message_a_worker_already_popped_leaves_its_data_alone(rq_settings):
    """A worker that popped a message reads and updates its job hash until RQ has finished it; a withdrawal
    that deleted the hash then made RQ fail the message (``InvalidJobOperation`` in ``handle_job_success``)."""
    from django_workflow_engine.adapters import rq as doorbell

    queue = rq_settings
    run = engine.start("triple", {"n": 1, "sleep": 0})
    job_id = WorkflowJob.objects.get(run=run, stage_id="ingest").id
    assert queue.connection.lpop(queue.key).decode() == job_id  # a worker took the message
    assert doorbell.withdraw([job_id], oldest=True) == 0
    assert queue.fetch_job(job_id) is not None  # its data is still there for the worker finishing it
    # a message still queued is dropped with its data
    queue.connection.rpush(queue.key, job_id)
    assert doorbell.withdraw([job_id]) == 1
    assert queue.job_ids == []
    assert queue.fetch_job(job_id) is None


def test_a_worker_that_stops_before_its_command_listener_subscribed_exits_at_once(rq_settings, monkeypatch):
    """rq/rq#1613: a burst worker can finish before its command listener has read the SUBSCRIBE reply; the
    listener then waits for a subscription that never comes while RQ joins it. The engine's worker bounds that
    wait, so runworker --burst exits rather than hanging for a minute."""
    import threading

    from redis.client import PubSub
    from rq import SimpleWorker

    from django_workflow_engine.hosts.rq_worker import _rq_worker_class

    get_message = PubSub.get_message

    def not_yet_subscribed(self, *args, **kwargs):
        self.subscribed_event.clear()  # the listener's state in the race: still waiting for its subscription
        return get_message(self, *args, **kwargs)

    monkeypatch.setattr(PubSub, "get_message", not_yet_subscribed)
    queue = rq_settings
    worker = _rq_worker_class(SimpleWorker)([queue], connection=queue.connection)
    worker.subscribe()
    stopping = threading.Thread(target=worker.unsubscribe, daemon=True)
    stopping.start()
    stopping.join(15)
    assert not stopping.is_alive(), "the worker's command listener kept it from exiting"
