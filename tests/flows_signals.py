"""Workflows that wait for a signal (a signal stage, then slow work; an async-batch stage woken by a signal): for
the worker-process tests around a resume."""

from __future__ import annotations

import time

from pydantic import BaseModel

from django_workflow_engine import (
    NotReady,
    Ready,
    Suspend,
    WorkflowBuilder,
    define_async_batch_stage,
    define_signal_stage,
    define_stage,
)


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


class Render(BaseModel):
    job: str
    url: str


@define_stage(id="prep", name="Prep", input=Job, output=Job)
def prep(ctx):
    time.sleep(1)  # a signal sent right after the start comes before the render stage waits
    return Job(n=ctx.input.n)


def _rendered(state, ctx):
    if "signal" not in state:
        return NotReady()
    return Ready(output={"job": state["job"], "url": state["signal"]["url"]})


@define_async_batch_stage(
    id="render", name="Render", input=Job, output=Render, check_completion=_rendered, signals=["rendered"]
)
def render(ctx):
    # Polled hourly: a resume within seconds can only come from the signal.
    return Suspend(state={"job": f"r-{ctx.input.n}"}, poll_interval=3600, wait_for_signal="rendered")


signal_batch = WorkflowBuilder("signal-batch", "Signal batch", input=Job, output=Render).pipe(prep).pipe(render).build()


def _rendered_slowly(state, ctx):
    ctx.log("INFO", "polled")
    if "signal" not in state:
        return NotReady()
    time.sleep(3)  # long enough to kill the worker polling it
    return Ready(output={"job": state["job"], "url": state["signal"]["url"]})


@define_async_batch_stage(
    id="render", name="Render", input=Job, output=Render, check_completion=_rendered_slowly, signals=["rendered"]
)
def render_slowly(ctx):
    return Suspend(state={"job": f"r-{ctx.input.n}"}, poll_interval=3600, wait_for_signal="rendered")


signal_batch_slow = (
    WorkflowBuilder("signal-batch-slow", "Signal batch, slow poll", input=Job, output=Render)
    .pipe(render_slowly)
    .build()
)
