"""A parent workflow whose stage starts one child run per item and waits for them (tests/unit/test_child_runs.py)."""

from __future__ import annotations

from pydantic import BaseModel

from django_workflow_engine import NotReady, Ready, Suspend, WorkflowBuilder, define_async_batch_stage, define_stage

STARTED: list[str] = []


class Customers(BaseModel):
    names: list[str]
    fail: str = ""


class Customer(BaseModel):
    name: str
    fail: bool = False


@define_stage(id="onboard", name="Onboard", input=Customer)
def onboard(ctx):
    if ctx.input.fail:
        raise ValueError(f"no address for {ctx.input.name}")
    return {"welcomed": ctx.input.name}


onboarding = WorkflowBuilder("onboarding", "Onboard one customer", input=Customer).pipe(onboard).build()


def all_children_done(state, ctx):
    children = ctx.children()
    if not all(child.finished for child in children):
        return NotReady()
    return Ready(
        output={
            "done": {c.key: c.output for c in children if c.status == "COMPLETED"},
            "failed": {c.key: c.error for c in children if c.status == "FAILED"},
        }
    )


@define_async_batch_stage(
    id="fan_out", name="Start one onboarding per customer", input=Customers, check_completion=all_children_done
)
def fan_out(ctx):
    for name in ctx.input.names:
        STARTED.append(ctx.start_child("onboarding", {"name": name, "fail": name == ctx.input.fail}, key=name))
    return Suspend(state={}, poll_interval=3600)


onboard_all = WorkflowBuilder("onboard-all", "Onboard every new customer", input=Customers).pipe(fan_out).build()
