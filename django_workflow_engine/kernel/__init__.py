"""The kernel: typed commands dispatched over ports. Imports nothing from Django."""

from .commands import (
    CancelRun,
    ClaimPendingRuns,
    CreateRun,
    CreateRuns,
    ExecuteJob,
    ExpireIdempotencyKeys,
    FlushOutbox,
    PollSuspended,
    ReapStaleLeases,
    ReapStuckRuns,
    ReplayDeadLetters,
    RerunFrom,
    TransitionRun,
)
from .kernel import Kernel, KernelOptions
from .records import Status
from .runner import DrainResult, JobOutcome, drain, run_job

__all__ = [
    "CancelRun",
    "ClaimPendingRuns",
    "CreateRun",
    "CreateRuns",
    "DrainResult",
    "ExecuteJob",
    "ExpireIdempotencyKeys",
    "FlushOutbox",
    "JobOutcome",
    "Kernel",
    "KernelOptions",
    "PollSuspended",
    "ReapStaleLeases",
    "ReapStuckRuns",
    "ReplayDeadLetters",
    "RerunFrom",
    "Status",
    "TransitionRun",
    "drain",
    "run_job",
]
