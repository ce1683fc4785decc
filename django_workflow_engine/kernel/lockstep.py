"""Executing several claimed jobs of different runs in lockstep, two transactions for all of them.

A worker with a backlog of short stages spends most of its time, and most of the database's, on the fixed cost
of each stage's transactions rather than on the stages. :func:`run_jobs` takes several claimed jobs and goes
through :mod:`.execution`'s three steps for all of them together:

1. **Begin** every job in one :meth:`~.ports.Persistence.batch` (their runs locked together, their stages read
   together, the writes sent together). An eager continuation needs no begin.
2. **Run** each stage's code, one after another, with no transaction open.
3. **Record** every outcome in a second batch: outcomes, events, jobs settled, runs transitioned and the runs'
   next stages started for this worker (their continuations are the next lockstep round).

Each step is exactly what :func:`.execution.run_job` does for one job, run by run inside the shared transaction,
so the result is the one separate transactions in that order would give. What a batch cannot hold is left to
the caller (``None`` in the result, to be executed with ``run_job``): a job whose workflow or stage is gone, a
map's item, an async-batch stage, a stage with a cluster-wide limit, and a run with a parent or a concurrency
key (finishing it writes another run's rows, which a batch may have read already). When a batch's transaction
fails (an exception left one of its steps, or its commit), every write of it is rolled back: jobs not begun yet
are left to the caller, and outcomes already computed are recorded each in a transaction of its own.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import resume
from .execution import Executed, JobOutcome, Settle, _begin, _Begun, _claim_for, _record, _run_stage, finish
from .records import JobRecord, StartedStage

if TYPE_CHECKING:
    from ..core.context import StageContext
    from ..core.workflow import Stage, Workflow
    from .executor import Outcome
    from .kernel import Kernel


class _Broken(Exception):
    """A step left the batch's transaction unusable: roll it all back."""


@dataclass
class _Step:
    index: int
    job: JobRecord
    workflow: Workflow
    stage_def: Stage
    settle: Settle
    started: StartedStage | None
    begun: _Begun | None = None
    executed: Executed | None = None
    outcome: Outcome | None = None
    ctx: StageContext | None = None
    code_ms: int = 0  # how long its stage code ran


def run_jobs(
    kernel: Kernel,
    jobs: Sequence[tuple[JobRecord, StartedStage | None]],
    *,
    continue_as: str | None = None,
    continue_if: Callable[[], bool] | None = None,
) -> list[JobOutcome | None]:
    """Execute claimed jobs (each with its :class:`StartedStage` when it is an eager continuation) in lockstep.

    Returns each job's outcome in order, or ``None`` for a job this path leaves to ``run_job`` (nothing was
    done for it). Infrastructure errors propagate as from ``run_job``: the jobs keep their leases."""
    deps = kernel.deps
    began = deps.clock.now()
    if deps.options.observer is not None:  # it observes one job at a time
        return [None] * len(jobs)
    settle = (continue_as, continue_if)
    planned = (_plan(kernel, index, job, started, *settle) for index, (job, started) in enumerate(jobs))
    steps = [step for step in planned if step is not None]
    causation_id = str(uuid.uuid4())
    _begin_all(kernel, [step for step in steps if step.started is None], causation_id)
    for step in steps:
        if step.started is not None:
            record = step.started.record
            step.begun = _Begun(step.started.run, step.started.stages, record, record.started_at or deps.clock.now())
    running = [step for step in steps if step.begun is not None and step.executed is None]
    for step in running:
        assert step.begun is not None
        if step.begun.woken:  # a SUSPENDED stage put back in the queue by a signal: polled, as run_job would
            polled = resume.poll_woken(
                deps,
                step.stage_def,
                step.begun.run,
                step.begun.record,
                step.job.id,
                _claim_for(step.settle),
                causation_id,
            )
            step.executed = Executed(**vars(polled), retryable=False)
        else:
            started = time.monotonic()
            step.outcome, step.ctx = _run_stage(deps, step.workflow, step.stage_def, step.begun)
            step.code_ms = int((time.monotonic() - started) * 1000)
    _record_all(kernel, [step for step in running if step.executed is None], causation_id)
    results: list[JobOutcome | None] = [None] * len(jobs)
    for step in steps:
        if step.executed is not None:
            # Its own stage's time: the batch's would count the other stages' too.
            results[step.index] = finish(kernel, step.job, step.executed, began, duration_ms=step.code_ms)
    return results


def _plan(
    kernel: Kernel,
    index: int,
    job: JobRecord,
    started: StartedStage | None,
    continue_as: str | None,
    continue_if: Callable[[], bool] | None,
) -> _Step | None:
    workflow = kernel.deps.registry.get(job.workflow_id)
    if workflow is None or not workflow.has_stage(job.stage_id):
        return None
    stage_def = workflow.stage(job.stage_id)
    if stage_def.id != job.stage_id or stage_def.mode != "sync" or stage_def.max_concurrent is not None:
        return None
    if started is not None and not _may_share(started.run.parent_run_id, started.run.concurrency_key):
        return None
    return _Step(index, job, workflow, stage_def, Settle(job.id, continue_as, continue_if), started)


def _may_share(parent_run_id: str | None, concurrency_key: str | None) -> bool:
    """Whether a run's steps may share a batch: finishing it writes no other run's rows."""
    return parent_run_id is None and concurrency_key is None


def _begin_all(kernel: Kernel, steps: list[_Step], causation_id: str) -> None:
    if not steps:
        return
    deps = kernel.deps
    try:
        with deps.persistence.batch([step.job.run_id for step in steps], stages=True) as batch:
            runs = dict(batch.runs)
            for step in steps:
                run = runs.get(step.job.run_id)
                if run is None or not _may_share(run.parent_run_id, run.concurrency_key):
                    continue  # left to run_job
                begun = _begin(deps, step.workflow, step.job.stage_id, step.job.run_id, causation_id, step.settle)
                if batch.broken:
                    raise _Broken
                if isinstance(begun, Executed):
                    step.executed = begun
                else:
                    step.begun = begun
    except Exception:
        # Rolled back: no begin happened, and each job is left to run_job (an error that is not the batch's own
        # then surfaces there).
        for step in steps:
            step.begun = step.executed = None


def _record_all(kernel: Kernel, steps: list[_Step], causation_id: str) -> None:
    if not steps:
        return
    deps = kernel.deps

    def record(step: _Step) -> Executed:
        assert step.begun is not None
        assert step.outcome is not None
        return _record(
            deps, step.workflow, step.stage_def, step.begun, step.outcome, step.ctx, causation_id, step.settle
        )

    try:
        with deps.persistence.batch([step.job.run_id for step in steps]) as batch:
            for step in steps:
                step.executed = record(step)
                if batch.broken:
                    raise _Broken
    except Exception:
        for step in steps:  # rolled back: each outcome in a transaction of its own, as run_job records it
            step.executed = record(step)
