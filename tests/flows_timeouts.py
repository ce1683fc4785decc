"""Workflows with time limits and retry policies, for the timeout tests and the worker test."""

from __future__ import annotations

import asyncio
import time

from pydantic import BaseModel

from django_workflow_engine import RetryPolicy, WorkflowBuilder, define_stage


class Nap(BaseModel):
    seconds: float = 0.0
    label: str = ""


class Woke(BaseModel):
    label: str


@define_stage(id="nap", name="Nap", input=Nap, output=Woke, timeout=2, retry=RetryPolicy(max_attempts=1))
def nap(ctx):
    time.sleep(ctx.input.seconds)
    return Woke(label=ctx.input.label)


@define_stage(id="async_nap", name="Async nap", input=Nap, output=Woke, timeout=1, max_attempts=2)
async def async_nap(ctx):
    await asyncio.sleep(ctx.input.seconds)
    return Woke(label=ctx.input.label)


sleepy = WorkflowBuilder("sleepy", "Sleeps as long as asked, limited to 2 s", input=Nap, output=Woke).pipe(nap).build()
async_sleepy = (
    WorkflowBuilder("async-sleepy", "Sleeps (async), limited to 1 s", input=Nap, output=Woke).pipe(async_nap).build()
)
