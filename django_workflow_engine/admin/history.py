"""What the run page says about a run's attempts, failures and waits, computed from rows it has already read.

A run's *attempts* are its generations: the first, and one more for each rerun. A rerun supersedes the stage
records it runs again (``WorkflowStage.superseded_at``) instead of deleting them, so attempt ``k`` ended at the
``k``-th distinct ``superseded_at`` of the run's records, and its records are those current at that moment.
A stage's *tries* are the deliveries of its job (``WorkflowJob.attempt``), retries included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone

from ..kernel.flow import sum_metrics
from ..models import Status, WorkflowJob, WorkflowLog, WorkflowStage
from .common import elapsed_ms

ERROR_TYPE = re.compile(
    r"^([A-Za-z_][\w.]*(?:Error|Exception|Exceeded|Timeout|Warning|Exit|Interrupt)\w*): (.*)$", re.S
)


@dataclass
class Attempt:
    """One generation of a run."""

    number: int
    started_at: datetime | None
    ended_at: datetime | None  # the rerun that replaced it (None: the current attempt)
    records: list[WorkflowStage] = field(default_factory=list)  # the stage records current during it
    replaced: list[WorkflowStage] = field(default_factory=list)  # those the rerun replaced
    actor: str | None = None

    @property
    def is_current(self) -> bool:
        return self.ended_at is None

    @property
    def failed(self) -> WorkflowStage | None:
        return next((s for s in self.replaced if s.status == Status.FAILED), None)

    @property
    def outcome(self) -> str:
        """``failed at score: RateLimitError: ...`` / ``completed`` (for an attempt a rerun replaced)."""
        failed = self.failed
        if failed is not None:
            return f"failed at {failed.stage_id}: {first_line(failed.error_message) or 'no error message'}"
        if self.replaced and all(s.status == Status.COMPLETED for s in self.replaced):
            return "completed"
        return "stopped"

    @property
    def rerun_from(self) -> str | None:
        return self.replaced[0].stage_id if self.replaced else None


def first_line(text: str | None, limit: int = 200) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def split_error(message: str | None) -> tuple[str, str]:
    """``("RateLimitError", "slow down")`` from ``"RateLimitError: slow down"``; ``("", message)`` otherwise."""
    text = (message or "").strip()
    match = ERROR_TYPE.match(text)
    return (match.group(1), match.group(2)) if match else ("", text)


def attempts(run: Any, current: list[WorkflowStage], earlier: list[WorkflowStage]) -> list[Attempt]:
    """The run's attempts, oldest first; the last one is the current attempt."""
    ends = sorted({s.superseded_at for s in earlier if s.superseded_at is not None})
    everything = [*earlier, *current]
    result = []
    start = run.started_at
    for number, end in enumerate(ends, start=1):
        replaced = [s for s in earlier if s.superseded_at == end]
        records = [s for s in everything if s.created_at <= end and (s.superseded_at is None or s.superseded_at >= end)]
        records.sort(key=lambda s: (s.execution_group, s.stage_number))
        replaced.sort(key=lambda s: (s.execution_group, s.stage_number))
        actor = next((s.superseded_by for s in replaced if s.superseded_by), None)
        result.append(Attempt(number, start, end, records, replaced, actor))
        start = end
    result.append(Attempt(len(ends) + 1, start, None, list(current)))
    return result


def current_share(attempt: Attempt) -> tuple[Decimal, int]:
    """Cost and tokens of the stage records the current attempt ran (not those kept from earlier attempts)."""
    ran = [s for s in attempt.records if attempt.started_at is None or s.created_at >= attempt.started_at]
    cost, tokens = sum_metrics(ran)
    return Decimal(cost), int(tokens)


def attempt_duration_ms(run: Any, attempt: Attempt) -> int | None:
    """Wall time of one attempt: from its start (the first start, or the rerun) to its end (or now)."""
    end = attempt.ended_at or run.completed_at
    return elapsed_ms(attempt.started_at, end)


def latest_jobs(jobs: list[WorkflowJob]) -> dict[str, WorkflowJob]:
    """The newest job of each stage id (a rerun's jobs are newer than the ones it cancelled)."""
    latest: dict[str, WorkflowJob] = {}
    for job in sorted(jobs, key=lambda j: (j.created_at, j.id)):
        latest[job.stage_id] = job
    return latest


def clock(value: datetime | None) -> str:
    return timezone.localtime(value).strftime("%H:%M:%S") if value is not None else "—"


def tries(job: WorkflowJob | None) -> str:
    """``3 of 3``: deliveries of the stage's job so far, of the most it may get."""
    if job is None:
        return "—"
    return f"{job.attempt} of {job.max_attempts}"


def retry_scheduled(stage: WorkflowStage, job: WorkflowJob | None) -> str | None:
    """``retrying at 10:04:12 (attempt 2 of 3)`` for a failed stage whose job waits for its next delivery."""
    if job is None or stage.status != Status.FAILED or job.status != Status.PENDING or job.attempt == 0:
        return None
    return f"retrying at {clock(job.available_at)} (attempt {job.attempt + 1} of {job.max_attempts})"


def stage_limit(workflow_id: str, stage_id: str) -> int | None:
    """The ``max_concurrent`` of a registered stage (``None``: none, or no longer registered)."""
    from ..registry import registry

    workflow = registry.get(workflow_id)
    if workflow is None or not workflow.has_stage(stage_id):
        return None
    return workflow.stage(stage_id).max_concurrent


def waits(run: Any, stages: list[WorkflowStage], jobs: dict[str, WorkflowJob]) -> list[str]:
    """What an unfinished run is waiting for, one sentence per stage that waits."""
    if run.status not in (Status.RUNNING, Status.PENDING):
        return []
    lines = []
    from .waiting import scheduled_wait

    scheduled = scheduled_wait(run)
    if scheduled is not None:
        lines.append(scheduled)
    if run.status == Status.PENDING:
        from .waiting import slot_wait

        lines.append(slot_wait(run) or "Waiting for maintenance to claim the run (runmaintenance).")
    for stage in stages:
        job = jobs.get(stage.stage_id)
        retry = retry_scheduled(stage, job)
        if retry is not None:
            error = first_line(stage.error_message)
            lines.append(f"Stage {stage.stage_id} failed ({error}); {retry}.")
        elif (
            stage.status == Status.SUSPENDED
            and isinstance(stage.suspended_state, dict)
            and (stage.suspended_state.get("waiting_for_signal"))
        ):
            text = f"Stage {stage.stage_id} is waiting for signal {stage.suspended_state['waiting_for_signal']!r}"
            if stage.max_wait_until is not None and stage.next_poll_at is not None and stage.next_poll_at.year < 2100:
                text += f" (times out at {clock(stage.next_poll_at)})"
            lines.append(text + ".")
        elif stage.status == Status.SUSPENDED and job is not None and job.status == Status.PENDING:
            lines.append(f"Stage {stage.stage_id} received its signal: queued for a worker to poll it now.")
        elif stage.status == Status.SUSPENDED:
            text = f"Stage {stage.stage_id} is suspended until its next poll at {clock(stage.next_poll_at)}"
            state = stage.suspended_state if isinstance(stage.suspended_state, dict) else {}
            if state.get("wait_for_signal"):  # Suspend(wait_for_signal=...): a signal wakes it sooner
                text += f", or until signal {state['wait_for_signal']!r} wakes it"
            if stage.max_wait_until is not None:
                text += f" (gives up at {clock(stage.max_wait_until)})"
            lines.append(text + ".")
        elif stage.status == Status.PENDING and job is not None and job.status == Status.PENDING and job.wait_reason:
            lines.append(f"Stage {stage.stage_id} is deferred: {job.wait_reason} (the same attempt; no retry is used).")
        elif stage.status == Status.PENDING and job is not None and job.status == Status.PENDING:
            limit = stage_limit(run.workflow_id, stage.stage_id)
            if limit is not None and job.available_at is not None and job.available_at > timezone.now():
                lines.append(
                    f"Stage {stage.stage_id} waits for a slot: at most {limit} of it run at once across the "
                    f"cluster (tried again at {clock(job.available_at)})."
                )
            else:
                lines.append(f"Stage {stage.stage_id} is queued for a worker (due at {clock(job.available_at)}).")
    if run.deadline_at is not None:
        when = timezone.localtime(run.deadline_at).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"Deadline: the run fails with 'deadline exceeded' if it has not finished by {when}.")
    return lines


def only_waiting(run: Any, stages: list[WorkflowStage]) -> bool:
    """True when a running run has nothing to do but wait for a suspended stage's next poll."""
    open_stages = [s for s in stages if s.status in (Status.PENDING, Status.RUNNING, Status.SUSPENDED)]
    return run.status == Status.RUNNING and bool(open_stages) and all(s.status == Status.SUSPENDED for s in open_stages)


def last_tracebacks(stage_pks: set[str]) -> dict[str, str]:
    """The traceback of each failed stage's last failed attempt, from its ERROR log line (one query)."""
    if not stage_pks:
        return {}
    traces: dict[str, str] = {}
    rows = WorkflowLog.objects.filter(stage_id__in=stage_pks, level=WorkflowLog.Level.ERROR).order_by("id")
    for stage_pk, meta in rows.values_list("stage_id", "metadata"):
        if isinstance(meta, dict) and isinstance(meta.get("traceback"), str):
            traces[stage_pk] = meta["traceback"]
    return traces
