"""The worker's lease keeper: one thread per process refreshes the leases of the jobs being executed."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from django_workflow_engine.hosts.leases import LeaseKeeper
from django_workflow_engine.kernel.records import JobRecord


class FakeJobs:
    def __init__(self, lost: set[str] | None = None):
        self.touched: list[tuple[str, str]] = []
        self.lost = lost or set()

    def touch(self, job_id: str, worker_id: str, now: datetime) -> bool:
        self.touched.append((job_id, worker_id))
        return job_id not in self.lost


class FakeKernel:
    def __init__(self, jobs: FakeJobs):
        self.jobs = jobs
        self.clock = type("Clock", (), {"now": staticmethod(lambda: datetime.now(UTC))})()


def _job(job_id: str) -> JobRecord:
    return JobRecord(id=job_id, run_id="r", workflow_id="wf", stage_id="s")


def _keeper_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "dwe-lease-keeper"]


def test_held_jobs_are_touched_until_released_by_one_thread():
    keeper, jobs = LeaseKeeper(), FakeJobs()
    kernel = FakeKernel(jobs)
    before = len(_keeper_threads())
    with keeper.hold(kernel, _job("j1"), "w", 0.05):
        with keeper.hold(kernel, _job("j2"), "w", 0.05):
            time.sleep(0.3)
        assert len(_keeper_threads()) == before + 1  # both jobs, one thread
        time.sleep(0.2)
    touched_then = len(jobs.touched)
    time.sleep(0.2)
    assert len(jobs.touched) == touched_then  # nothing held: nothing touched
    assert jobs.touched.count(("j2", "w")) >= 3
    assert jobs.touched.count(("j1", "w")) > jobs.touched.count(("j2", "w"))  # held longer


def test_a_short_job_is_never_touched_and_starts_no_new_thread_next_time():
    keeper, jobs = LeaseKeeper(), FakeJobs()
    kernel = FakeKernel(jobs)
    for n in range(50):
        with keeper.hold(kernel, _job(f"j{n}"), "w", 5):
            pass
    assert jobs.touched == []
    assert keeper._thread is not None
    assert keeper._thread.is_alive()
    first = keeper._thread
    with keeper.hold(kernel, _job("again"), "w", 5):
        assert keeper._thread is first


def test_a_lost_lease_is_logged_and_no_longer_touched(caplog):
    keeper, jobs = LeaseKeeper(), FakeJobs(lost={"gone"})
    with keeper.hold(FakeKernel(jobs), _job("gone"), "w", 0.05):
        time.sleep(0.4)
    assert jobs.touched.count(("gone", "w")) == 1
    assert "lost the lease of job gone" in caplog.text


def test_a_shorter_interval_wakes_the_keeper_at_once():
    keeper, jobs = LeaseKeeper(), FakeJobs()
    kernel = FakeKernel(jobs)
    with keeper.hold(kernel, _job("slow"), "w", 30), keeper.hold(kernel, _job("fast"), "w", 0.05):
        time.sleep(0.3)
    assert ("fast", "w") in jobs.touched


class FlakyRegistration:
    """A registration whose first upsert meets a database that is restarting (as in the chaos suite)."""

    worker_id = "w-flaky"

    def __init__(self) -> None:
        self.saves: list[bool] = []

    def save(self, job, *, stopped: bool = False) -> None:  # type: ignore[no-untyped-def]
        self.saves.append(stopped)
        if len(self.saves) == 1:
            raise ConnectionError("the database system is shutting down")


def test_a_database_down_at_start_does_not_stop_the_worker_and_the_next_beat_registers_it():
    keeper, registration = LeaseKeeper(), FlakyRegistration()
    keeper.register(registration, 0.05)  # type: ignore[arg-type]
    deadline = time.monotonic() + 5
    while len(registration.saves) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    keeper.unregister()
    assert registration.saves[:3] == [False, False, False]  # the failed start, then beats
    assert registration.saves[-1] is True
