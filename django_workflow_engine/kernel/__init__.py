"""The kernel: typed commands dispatched over ports. Imports nothing from Django."""

from .commands import (
    CancelRun,
    ClaimPendingRuns,
    CreateRun,
    CreateRuns,
    ExecuteJob,
    ExpireDeadlines,
    ExpireIdempotencyKeys,
    FlushOutbox,
    PollSuspended,
    ReapStaleLeases,
    ReapStuckRuns,
    ReplayDeadLetters,
    RerunFrom,
    SignalResult,
    SignalRun,
    TransitionRun,
)
from .execution import JobOutcome, run_job
from .kernel import Kernel, KernelOptions
from .records import Status

__all__ = [
    "CancelRun",
    "ClaimPendingRuns",
    "CreateRun",
    "CreateRuns",
    "ExecuteJob",
    "ExpireDeadlines",
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
    "SignalResult",
    "SignalRun",
    "Status",
    "TransitionRun",
    "run_job",
]
