"""A hypothesis state machine over the kernel: random interleavings of create, claim, execute (success,
failure, suspend, crash), poll, transition, cancel, rerun, lease and stuck reaping, with invariants checked
after every step. Runs on the in-memory adapters (many examples) and on the ORM (fewer)."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from django_workflow_engine import NotReady, Ready, Suspend, WorkflowBuilder, define_async_batch_stage, define_stage
from django_workflow_engine.errors import WorkflowEngineError
from django_workflow_engine.kernel import (
    CancelRun,
    ClaimPendingRuns,
    CreateRun,
    KernelOptions,
    PollSuspended,
    ReapStaleLeases,
    ReapStuckRuns,
    RerunFrom,
    TransitionRun,
    run_job,
)
from tests.harness import MemoryKernel, OrmKernel

BEHAVIOUR: dict[str, str] = {}  # stage id -> "ok" | "fail" | "suspend"


def _act(ctx, stage_id: str):
    mode = BEHAVIOUR.get(stage_id, "ok")
    if mode == "fail":
        raise RuntimeError(f"{stage_id} failed")
    return {"by": stage_id}


s1 = define_stage(id="s1", name="S1", execute=lambda ctx: _act(ctx, "s1"))
s2 = define_stage(id="s2", name="S2", execute=lambda ctx: _act(ctx, "s2"))
s3 = define_stage(id="s3", name="S3", execute=lambda ctx: _act(ctx, "s3"))


def _check(state, ctx):
    return Ready(output={"by": "batch"}) if BEHAVIOUR.get("batch-ready") == "yes" else NotReady(next_check_in=5)


@define_async_batch_stage(id="batch", name="Batch", check_completion=_check)
def batch(ctx):
    if BEHAVIOUR.get("batch") == "fail":
        raise RuntimeError("submit failed")
    return Suspend(state={"id": 1}, poll_interval=5, max_wait=60)


flow = WorkflowBuilder("machine", "Machine").pipe(s1).parallel([s2, batch]).pipe(s3).build()
MAX_ATTEMPTS = 3
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}


class KernelMachine(RuleBasedStateMachine):
    harness_class: type = MemoryKernel

    def __init__(self):
        super().__init__()
        BEHAVIOUR.clear()
        self.h = self.harness_class([flow], options=KernelOptions(max_attempts=MAX_ATTEMPTS, retry_base_seconds=1))
        self.runs: list[str] = []
        self.terminal: dict[str, str] = {}  # run id -> terminal status seen; allowed to change only by rerun
        self.cancelled_counts: dict[str, tuple[int, int]] = {}

    # -- rules ---------------------------------------------------------------------------------------------
    @rule(start=st.booleans())
    def create(self, start):
        self.runs.append(self.h.dispatch(CreateRun(workflow_id="machine", input={}, start=start)).run_id)

    @rule()
    def claim(self):
        self.h.dispatch(ClaimPendingRuns(worker_id="m", max_claims=2))

    @rule(stage=st.sampled_from(["s1", "s2", "s3", "batch"]), mode=st.sampled_from(["ok", "ok", "fail"]))
    def behave(self, stage, mode):
        BEHAVIOUR[stage] = mode

    @rule(ready=st.booleans())
    def batch_ready(self, ready):
        BEHAVIOUR["batch-ready"] = "yes" if ready else "no"

    @rule()
    def execute(self):
        job = self.h.jobs.dequeue("w", self.h.clock.now())
        if job is not None:
            run_job(self.h.kernel, job)

    @rule()
    def crash(self):
        # a worker takes a job and dies without a trace
        self.h.jobs.dequeue("crashing", self.h.clock.now())

    @rule(seconds=st.sampled_from([1, 5, 30, 400, 1000]))
    def tick(self, seconds):
        self.h.clock.advance(seconds=seconds)

    @rule()
    def poll(self):
        result = self.h.dispatch(PollSuspended())
        for run_id in result.resumed_run_ids:
            self.h.dispatch(TransitionRun(run_id))

    @precondition(lambda self: self.runs)
    @rule(data=st.data())
    def transition(self, data):
        self.h.dispatch(TransitionRun(data.draw(st.sampled_from(self.runs))))

    @precondition(lambda self: self.runs)
    @rule(data=st.data())
    def cancel(self, data):
        self.h.dispatch(CancelRun(data.draw(st.sampled_from(self.runs))))

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), stage=st.sampled_from(["s1", "s2", "batch", "s3"]))
    def rerun(self, data, stage):
        run_id = data.draw(st.sampled_from(self.runs))
        try:
            self.h.dispatch(RerunFrom(run_id, stage))
        except WorkflowEngineError:
            return
        self.terminal.pop(run_id, None)

    @rule()
    def reap_leases(self):
        self.h.dispatch(ReapStaleLeases(stale_after_seconds=300))

    @rule()
    def reap_stuck(self):
        self.h.dispatch(ReapStuckRuns(stuck_after_seconds=900))

    # -- invariants ----------------------------------------------------------------------------------------
    @invariant()
    def invariants(self):
        for run_id in self.runs:
            run = self.h.run(run_id)
            stages = self.h.persistence.get_stages(run_id)
            jobs = self.h.jobs.jobs_for_run(run_id)
            if run.status == "COMPLETED":
                assert {s.status for s in stages} == {"COMPLETED"}, (run_id, [(s.stage_id, s.status) for s in stages])
                assert len(stages) == 4
            if run.status in TERMINAL:
                previous = self.terminal.setdefault(run_id, run.status)
                assert previous == run.status, f"terminal run {run_id} went {previous} -> {run.status}"
                assert not [j for j in jobs if j.status == "PENDING"], "a finished run has runnable jobs"
            if run.status == "CANCELLED":
                counts = (len(stages), len(jobs))
                before = self.cancelled_counts.setdefault(run_id, counts)
                assert counts == before, "a cancelled run got a new stage or job"
                assert not [s for s in stages if s.status in ("PENDING", "SUSPENDED")]
            sequences = [e.sequence for e in self.h.persistence.get_events(run_id)]
            assert sequences == list(range(1, len(sequences) + 1)), "event sequence has a gap"
            for job in jobs:
                assert job.attempt <= MAX_ATTEMPTS, f"job {job.stage_id} attempt {job.attempt}"
            per_stage = defaultdict(int)
            for job in jobs:
                if job.status in ("PENDING", "RUNNING"):
                    per_stage[job.stage_id] += 1
            assert all(n == 1 for n in per_stage.values()), f"two live jobs for one stage: {dict(per_stage)}"


class OrmKernelMachine(KernelMachine):
    harness_class = OrmKernel

    def __init__(self):
        from django_workflow_engine.models import IdempotencyKey, OutboxEvent, WorkflowRun

        for model in (OutboxEvent, IdempotencyKey, WorkflowRun):  # runs cascade to stages, jobs, logs
            model.objects.all().delete()
        super().__init__()


TestKernelInMemory = KernelMachine.TestCase
TestKernelInMemory.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.mark.django_db(transaction=True)
class TestKernelOnOrm(OrmKernelMachine.TestCase):
    settings = settings(max_examples=15, stateful_step_count=25, deadline=None, suppress_health_check=list(HealthCheck))
