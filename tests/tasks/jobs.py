"""@task functions the tests enqueue (module level, as the framework requires)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from django_workflow_engine.tasks.compat import FRAMEWORK

if FRAMEWORK == "django.tasks":
    from django.tasks import task
else:
    from django_tasks import task

# Attempts of ``flaky`` are counted in this process-independent file (set by the test).
COUNTER_DIR = "DWE_TASK_TEST_DIR"


@task
def add(a: int, b: int) -> int:
    return a + b


@task(priority=3, queue_name="emails")
def send_email(to: str, subject: str = "") -> dict:
    return {"to": to, "subject": subject}


@task
def explode(message: str) -> None:
    raise ValueError(message)


def _bump(name: str) -> int:
    path = Path(os.environ[COUNTER_DIR]) / name
    count = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(count))
    return count


@task(takes_context=True)
def flaky(context, fail_times: int) -> dict:
    """Fails its first ``fail_times`` attempts; returns what the TaskContext said on the one that worked."""
    count = _bump("flaky")
    if count <= fail_times:
        raise RuntimeError(f"attempt {context.attempt} failed")
    return {"attempt": context.attempt, "result_id": context.task_result.id, "calls": count}


@task
def record(name: str) -> str:
    """Appends ``name`` to a file: the order tasks ran in."""
    with open(Path(os.environ[COUNTER_DIR]) / "order", "a") as f:
        f.write(name + "\n")
    return name


@task
def slow_once(seconds: float) -> int:
    """Sleeps ``seconds`` (long enough to be SIGKILLed) and counts its executions."""
    count = _bump("slow_once")
    with open(Path(os.environ[COUNTER_DIR]) / "started", "a") as f:
        f.write(f"{count}\n")
    time.sleep(seconds)
    return count


@task
async def async_add(a: int, b: int) -> int:
    return a + b


@task
def returns_object() -> object:
    return object()


@task
def summarize(text: str) -> str:
    """Calls a model through the engine's AI helper for tasks."""
    from django_workflow_engine import tasks

    return tasks.ai().generate_text("gpt-4o-mini", f"Summarize: {text}").text


@task(takes_context=True)
def own_status(context) -> dict:
    """What get_result says about this task while it runs."""
    seen = own_status.get_result(context.task_result.id)
    return {"status": str(seen.status), "worker_ids": seen.worker_ids, "finished": seen.is_finished}
