"""What every handler is given: the ports and the kernel's tunables."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.context import AIFactory
from .ports import BlobStore, Clock, EventSink, JobQueue, Persistence, WorkflowRegistry


@dataclass(frozen=True)
class KernelOptions:
    """Tunables. Attributes:
    max_attempts: job attempts before a stage fails for good (default 3; stages may override).
    retry_base_seconds: backoff base: retry n waits ``base * 2**(n-1)`` seconds (default 2).
    idempotency_stale_seconds: an in-progress idempotency key older than this may be reclaimed (600; None: never).
    inline_output_bytes: outputs up to this JSON size live in the stage row, larger ones in blob storage.
    max_input_bytes: larger workflow inputs are refused (1 MiB).
    suspend_fallback_seconds: poll interval when a suspended stage gives none (60).
    retry_max_interval_seconds: the longest wait between two attempts (None: no ceiling).
    retry_jitter: a fraction in [0, 1]: each retry waits up to that share less, at random (0: exact).
    stage_timeout_seconds: the time one stage execution may take, for stages without their own (None: no limit).
    max_map_items: a map stage over more items than this fails its run (10,000).
    observer: tracing hooks (``stage(job)`` context manager, ``stage_log(...)``); None: not called at all.
    """

    max_attempts: int = 3
    retry_base_seconds: float = 2.0
    idempotency_stale_seconds: float | None = 600.0
    inline_output_bytes: int = 64 * 1024
    max_input_bytes: int = 1024 * 1024
    suspend_fallback_seconds: float = 60.0
    retry_max_interval_seconds: float | None = None
    retry_jitter: float = 0.0
    stage_timeout_seconds: float | None = None
    max_map_items: int = 10_000
    observer: Any = None


@dataclass
class Deps:
    """Everything a handler may use."""

    persistence: Persistence
    jobs: JobQueue
    blobs: BlobStore
    sink: EventSink
    clock: Clock
    registry: WorkflowRegistry
    options: KernelOptions
    ai_factory: AIFactory | None = None
    # The kernel's own ``dispatch``, for the few paths that start a command from inside another (a stage
    # starting a child run).
    dispatch: Callable[[Any], Any] | None = None
