"""The ports a map's items settle through without the run lock: ``share_run``, ``update_open_stage``,
``count_map_items`` (Persistence) and ``claim_item`` (JobQueue), on the in-memory reference and the ORM."""

from __future__ import annotations

from datetime import timedelta

import pytest

from django_workflow_engine.kernel.records import Status
from tests.conformance.conftest import orm_adapters

pytestmark = pytest.mark.django_db  # the ORM variant needs the test database

RUNNING = {"status": Status.RUNNING}


def _map(a, run_id: str, items: int, queued: int | None = None):
    """A RUNNING map record ``m`` over ``items`` items, and its items' PENDING records."""
    counts = {"map_items": items, "map_queued": items if queued is None else queued, "map_done": 0, "map_failed": []}
    parent = a.stage(run_id, "m", group=2, status=Status.RUNNING, metrics={**counts, "duration_ms": 3})
    records = [a.stage(run_id, f"m[{i}]", group=2, number=1, item_index=i, item=i) for i in range(items)]
    return parent, records


def test_share_run_reads_the_run_inside_a_transaction(adapters):
    adapters.run("r1")
    with adapters.persistence.atomic():
        assert adapters.persistence.share_run("r1").id == "r1"
        assert adapters.persistence.share_run("nope") is None


def test_update_open_stage_writes_only_a_current_record_in_one_of_the_statuses(adapters):
    a = adapters
    a.run("r1")
    record = a.stage("r1", "m[0]", item_index=0, item={"text": "one"})
    p = a.persistence
    assert p.update_open_stage("r1", "m[0]", RUNNING, a.now(), (Status.RUNNING,)) is None  # PENDING
    assert p.update_open_stage("r1", "m[0]", RUNNING, a.now(), (Status.PENDING,), stage_pk="other") is None
    assert p.get_stage("r1", "m[0]").version == 1  # nothing written
    a.clock.advance(seconds=1)
    written = p.update_open_stage("r1", "m[0]", RUNNING, a.now(), (Status.PENDING, Status.FAILED), record.id)
    assert (written.id, written.status, written.version, written.updated_at) == (record.id, "RUNNING", 2, a.now())
    assert (written.item_index, written.item) == (0, {"text": "one"})  # the whole record, as written
    assert p.get_stage("r1", "m[0]").status == Status.RUNNING
    assert p.update_open_stage("r1", "m[9]", RUNNING, a.now(), (Status.PENDING,)) is None  # no such stage
    p.supersede_stages_from_group("r1", 1, a.now())
    assert p.update_open_stage("r1", "m[0]", {"status": "COMPLETED"}, a.now(), (Status.RUNNING,)) is None


def test_count_map_items_adds_to_the_counts_and_returns_them(adapters):
    a = adapters
    a.run("r1")
    parent, _ = _map(a, "r1", 4, queued=2)
    p = a.persistence
    a.clock.advance(seconds=1)
    counted = p.count_map_items("r1", "m", 1, [], a.now())
    assert counted.id == parent.id
    assert counted.metrics == {"map_items": 4, "map_queued": 3, "map_done": 1, "map_failed": [], "duration_ms": 3}
    assert (counted.version, counted.updated_at) == (2, a.now())
    counted = p.count_map_items("r1", "m", 0, [3, 1], a.now())
    assert counted.metrics["map_failed"] == [1, 3]
    assert counted.metrics["map_queued"] == 4  # at most map_items
    counted = p.count_map_items("r1", "m", 1, [1], a.now())  # an index counted already is not counted again
    assert (counted.metrics["map_done"], counted.metrics["map_failed"]) == (2, [1, 3])
    assert p.get_stage("r1", "m").metrics == counted.metrics


def test_count_map_items_counts_only_a_current_running_map(adapters):
    a = adapters
    a.run("r1")
    parent, _ = _map(a, "r1", 2)
    p = a.persistence
    assert p.count_map_items("r1", "x", 1, [], a.now()) is None
    p.update_stage(parent.id, {"status": Status.FAILED}, a.now())
    assert p.count_map_items("r1", "m", 1, [], a.now()) is None
    assert p.get_stage("r1", "m").metrics["map_done"] == 0


def test_claim_item_takes_the_oldest_due_pending_job_of_the_maps_items_only(adapters):
    a = adapters
    a.run("r1")
    a.run("r2")
    a.job("r1", "m")  # the map itself has no job in practice: not an item
    a.job("r1", "mx[0]")  # another map whose id starts the same
    first = a.job("r1", "m[0]")
    a.clock.advance(seconds=1)
    later = a.job("r1", "m[1]", available_at=a.now() + timedelta(seconds=5))
    second = a.job("r1", "m[2]")
    a.job("r2", "m[0]")
    job = a.jobs.claim_item("r1", "m", "w", a.now())
    assert (job.id, job.status, job.attempt, job.worker_id) == (first, Status.RUNNING, 1, "w")
    assert a.jobs.claim_item("r1", "m", "w", a.now()).id == second  # m[1] is not due
    assert a.jobs.claim_item("r1", "m", "w", a.now()) is None
    a.clock.advance(seconds=5)
    assert a.jobs.claim_item("r1", "m", "w", a.now()).id == later
    assert a.jobs.claim_item("r1", "nope", "w", a.now()) is None


def test_claim_item_withdraws_the_message_after_commit(django_capture_on_commit_callbacks):
    withdrawn: list[list[str]] = []
    a = orm_adapters(on_withdraw=withdrawn.append)
    a.run("r1")
    job_id = a.job("r1", "m[0]")
    with django_capture_on_commit_callbacks(execute=True), a.persistence.atomic():
        assert a.jobs.claim_item("r1", "m", "w", a.now()).id == job_id
        assert withdrawn == []
    assert withdrawn == [[job_id]]
