"""Workflows shared by the test suites. Stage functions record calls in ``CALLS`` so tests can see what ran."""

from __future__ import annotations

import threading
from collections import Counter

from pydantic import BaseModel, Field

from django_workflow_engine import StageResult, WorkflowBuilder, define_stage

CALLS: Counter[str] = Counter()
GATES: dict[str, threading.Event] = {}
FAIL: dict[str, str] = {}


class Numbers(BaseModel):
    value: int


class Tagged(BaseModel):
    value: int
    tag: str


class Merged(BaseModel):
    total: int
    tags: list[str]


class ScaleConfig(BaseModel):
    factor: int = Field(default=2, ge=1, le=100)


def _visit(stage_id: str) -> None:
    CALLS[stage_id] += 1
    gate = GATES.get(stage_id)
    if gate is not None:
        gate.wait(timeout=30)
    if stage_id in FAIL:
        raise RuntimeError(FAIL[stage_id])


@define_stage(id="a", name="Double", input=Numbers, output=Numbers, config=ScaleConfig)
def stage_a(ctx):
    _visit("a")
    ctx.log("INFO", "doubling", value=ctx.input.value)
    ctx.progress(50, "half way")
    return Numbers(value=ctx.input.value * ctx.config.factor)


@define_stage(id="b", name="Add one", input=Numbers, output=Tagged)
def stage_b(ctx):
    _visit("b")
    return {"value": ctx.input.value + 1, "tag": "b"}


@define_stage(id="c", name="Add ten", input=Numbers, output=Tagged)
async def stage_c(ctx):
    _visit("c")
    return Tagged(value=ctx.input.value + 10, tag="c")


class BC(BaseModel):
    b: Tagged
    c: Tagged


@define_stage(id="d", name="Merge", input=BC, output=Merged, dependencies=["b", "c"])
def stage_d(ctx):
    _visit("d")
    assert ctx.require("a") is not None
    return StageResult(
        output=Merged(total=ctx.input.b.value + ctx.input.c.value, tags=[ctx.input.b.tag, ctx.input.c.tag]),
        custom_metrics={"total_cost": 0.25, "total_tokens": 30},
        artifacts={"summary": {"lines": 2}},
    )


diamond = (
    WorkflowBuilder("diamond", "Diamond", "a then b||c then d", input=Numbers, output=Merged)
    .pipe(stage_a)
    .parallel([stage_b, stage_c])
    .pipe(stage_d)
    .build()
)


def reset() -> None:
    CALLS.clear()
    for gate in GATES.values():
        gate.set()
    GATES.clear()
    FAIL.clear()


# -- a workflow for real worker processes ---------------------------------------------------------------------


class Job(BaseModel):
    n: int
    sleep: float = 0.0


def _work(ctx, label: str) -> dict:
    import time

    if ctx.input is not None and getattr(ctx.input, "sleep", 0):
        time.sleep(ctx.input.sleep)
    ctx.log("INFO", f"executed {label}")
    return {"n": ctx.input.n if hasattr(ctx.input, "n") else 0, "by": label}


class Step(BaseModel):
    n: int
    by: str


class Pair(BaseModel):
    left: Step
    right: Step


@define_stage(id="ingest", name="Ingest", input=Job, output=Step)
def ingest(ctx):
    return _work(ctx, "ingest")


@define_stage(id="left", name="Left", input=Step, output=Step)
def left(ctx):
    return _work(ctx, "left")


@define_stage(id="right", name="Right", input=Step, output=Step)
def right(ctx):
    return _work(ctx, "right")


@define_stage(id="join", name="Join", input=Pair)
def join(ctx):
    ctx.log("INFO", "executed join")
    return {"sum": ctx.input.left.n + ctx.input.right.n}


triple = (
    WorkflowBuilder("triple", "Triple", "ingest -> left||right -> join", input=Job)
    .pipe(ingest)
    .parallel([left, right])
    .pipe(join)
    .build()
)


# The same shape with an AI stage: two mocked litellm calls (no network), each followed by a pause so that
# SIGKILLs land between an AI call and the stage's completion (the AI call journal's case).
AI_PAUSE_SECONDS = 0.1


@define_stage(id="right", name="Right (AI)", input=Step, output=Step)
def right_ai(ctx):
    import time

    ai = ctx.ai()
    for i in (1, 2):
        ai.generate_text("gpt-4o-mini", f"run {ctx.input.n}, question {i}", mock_response=f"answer {i}")
        time.sleep(AI_PAUSE_SECONDS)
    return _work(ctx, "right")


triple_ai = (
    WorkflowBuilder("triple-ai", "Triple with an AI stage", "ingest -> left||right(AI) -> join", input=Job)
    .pipe(ingest)
    .parallel([left, right_ai])
    .pipe(join)
    .build()
)
