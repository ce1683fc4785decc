"""Workflows with concurrency limits, for tests/integration/test_concurrency_limits.py and the worker test."""

from __future__ import annotations

from pydantic import BaseModel

from django_workflow_engine import WorkflowBuilder, define_stage


class Order(BaseModel):
    customer: str
    n: int = 0
    sleep: float = 0.0


class Done(BaseModel):
    n: int


@define_stage(id="handle", name="Handle", input=Order, output=Done)
def handle(ctx):
    import time

    if ctx.input.sleep:
        time.sleep(ctx.input.sleep)
    return Done(n=ctx.input.n)


def customer_key(data: dict) -> str | None:
    if data["customer"] == "boom":
        raise ValueError("no customer registry")
    if data["customer"] == "bad-type":
        return 42  # type: ignore[return-value]
    return data["customer"] or None


per_customer = (
    WorkflowBuilder(
        "per-customer",
        "One at a time per customer",
        input=Order,
        output=Done,
        max_concurrent_runs=1,
        concurrency_key=customer_key,
    )
    .pipe(handle)
    .build()
)

whole_two = (
    WorkflowBuilder("whole-two", "Two at a time", input=Order, output=Done, max_concurrent_runs=2).pipe(handle).build()
)


@define_stage(id="render", name="Render on the one GPU pair", input=Order, output=Done, max_concurrent=2)
def render(ctx):
    import time

    if ctx.input.sleep:
        time.sleep(ctx.input.sleep)
    return Done(n=ctx.input.n)


@define_stage(id="prepare", name="Prepare", input=Order, output=Order)
def prepare(ctx):
    return ctx.input


# Unlimited runs whose second stage is limited to two executions at once across the cluster.
gpu_pair = (
    WorkflowBuilder("gpu-pair", "Render, two at a time", input=Order, output=Done).pipe(prepare).pipe(render).build()
)


# A long stage that reports progress and logs while it runs (tests/acceptance/test_live_progress.py).
class Steps(BaseModel):
    steps: int = 3
    pause: float = 0.5


class Walked(BaseModel):
    steps: int


@define_stage(id="walk", name="Walk", input=Steps, output=Walked)
def walk(ctx):
    import time

    for i in range(ctx.input.steps):
        ctx.log("INFO", f"step {i + 1} of {ctx.input.steps}")
        ctx.progress(100 * (i + 1) / ctx.input.steps, f"step {i + 1}")
        time.sleep(ctx.input.pause)
    return Walked(steps=ctx.input.steps)


slow_walk = WorkflowBuilder("slow-walk", "A slow walk", input=Steps, output=Walked).pipe(walk).build()
