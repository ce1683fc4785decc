"""A failed job: retried after its stage's backoff while attempts remain, else failed for good with its run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from ..core.retry import NO_POLICY, RetryPolicy
from .commands import TransitionRun
from .logcontext import job_extra
from .records import JobRecord

if TYPE_CHECKING:
    from ..core.workflow import Stage
    from .deps import Deps
    from .kernel import Kernel

logger = logging.getLogger("django_workflow_engine.worker")


def retry_delay(deps: Deps, job: JobRecord, stage: Stage | None) -> timedelta:
    """Exponential backoff from the stage's retry policy and the settings: ``base * 2**(attempt-1)`` (2 s, 4 s,
    8 s with the default base), at most the policy's longest wait, less its jitter."""
    options = deps.options
    defaults = RetryPolicy(
        backoff_base=options.retry_base_seconds,
        max_interval=options.retry_max_interval_seconds,
        jitter=options.retry_jitter,
    )
    if stage is None:
        return NO_POLICY.delay(job.attempt, defaults)
    policy = stage.retry
    if stage.retry_base_seconds is not None and policy.backoff_base is None:
        policy = replace(policy, backoff_base=stage.retry_base_seconds)
    return policy.delay(job.attempt, defaults)


def settle_failure(
    kernel: Kernel,
    job: JobRecord,
    error: str | None,
    ghost: bool,
    retryable: bool,
    now: datetime,
    on_error: Callable[[BaseException], None] | None,
) -> tuple[Literal["retrying", "failed"], Literal["advanced", "completed", "failed", "noop"] | None]:
    """A failed job: retried with backoff while attempts remain, else failed for good and its run transitioned."""
    deps = kernel.deps
    error = error or "Unknown error"
    if not ghost and retryable and job.attempt < job.max_attempts:
        workflow = deps.registry.get(job.workflow_id)
        stage = workflow.stage(job.stage_id) if workflow and workflow.has_stage(job.stage_id) else None
        deps.jobs.fail(job.id, error, now + retry_delay(deps, job, stage), now)
        return "retrying", None
    deps.jobs.fail(job.id, error, None, now)
    if ghost:
        return "failed", None
    try:
        return "failed", kernel.dispatch(TransitionRun(job.run_id)).action
    except Exception as exc:
        logger.exception("transition after the failure of job %s failed", job.id, extra=job_extra(job))
        if on_error:
            on_error(exc)
        return "failed", None
