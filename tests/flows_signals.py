"""A workflow that waits for a signal, then does slow work: for the worker-process tests around a resume."""

from __future__ import annotations

import time

from pydantic import BaseModel

from django_workflow_engine import WorkflowBuilder, define_signal_stage, define_stage


class Job(BaseModel):
    n: int


class Go(BaseModel):
    go: bool


class Done(BaseModel):
    n: int


gate = define_signal_stage(id="gate", name="Gate", signal="go", input=Job, output=Go)


@define_stage(id="work", name="Work", input=Go, output=Done)
def work(ctx):
    ctx.log("INFO", "executed work")
    time.sleep(3)  # long enough to kill the worker executing it
    return Done(n=1)


signal_resume = WorkflowBuilder("signal-resume", "Signal resume", input=Job, output=Done).pipe(gate).pipe(work).build()
