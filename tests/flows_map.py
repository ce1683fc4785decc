"""Map (dynamic fan-out) workflows for the tests (tests/unit/test_map.py, tests/integration/test_map.py)."""

from __future__ import annotations

from pydantic import BaseModel

from django_workflow_engine import WorkflowBuilder, define_stage

EXECUTED: list[int] = []
FLAKY_LEFT: dict[int, int] = {}  # item -> failures still to raise before it succeeds


class Doc(BaseModel):
    n: int = 3
    bad: list[int] = []
    shape: str = "list"  # "list", "dict", "none": what split returns


@define_stage(id="split", name="Split into chunks", input=Doc)
def split(ctx):
    if ctx.input.shape == "dict":
        return {"chunks": {"a": 1}}
    if ctx.input.shape == "none":
        return {"chunks": None}
    return {"chunks": list(range(ctx.input.n)), "bad": ctx.input.bad}


@define_stage(id="square", name="Square one chunk")
def square(ctx):
    item = ctx.input
    EXECUTED.append(item)
    if FLAKY_LEFT.get(item, 0) > 0:
        FLAKY_LEFT[item] -= 1
        raise RuntimeError(f"flaky {item}")
    if item < 0:
        raise ValueError(f"negative item {item}")
    return item * item


@define_stage(id="total", name="Add up")
def total(ctx):
    value = ctx.workflow_context["square"]
    if isinstance(value, dict):  # on_error="continue"
        return {"sum": sum(v for v in value["outputs"] if v is not None), "errors": value["errors"]}
    return {"sum": sum(value), "squares": value}


def _chunks(out):
    return [-x if x in out.get("bad", []) else x for x in out["chunks"]]


squares = (
    WorkflowBuilder("map-squares", "Square each chunk", input=Doc)
    .pipe(split)
    .map(square, over=_chunks)
    .pipe(total)
    .build()
)
squares_two_at_a_time = (
    WorkflowBuilder("map-squares-2", "Square each chunk, two at a time", input=Doc)
    .pipe(split)
    .map(square, over=_chunks, max_parallel=2)
    .pipe(total)
    .build()
)
squares_tolerant = (
    WorkflowBuilder("map-squares-tolerant", "Square each chunk, skip failures", input=Doc)
    .pipe(split)
    .map(square, over=_chunks, on_error="continue", max_parallel=3)
    .pipe(total)
    .build()
)
squares_by_field = (
    WorkflowBuilder("map-squares-field", "Square each chunk (over a field)", input=Doc)
    .pipe(split)
    .map(square, over="chunks")
    .build()
)


@define_stage(id="slow_square", name="Square one chunk, slowly")
def slow_square(ctx):
    """2 ms per item; each execution is appended to a file the acceptance test reads (one line per run)."""
    import os
    import time

    time.sleep(0.002)
    tmp = os.environ.get("WORKFLOW_ENGINE_TEST_TMP")
    if tmp:
        with open(os.path.join(tmp, "map-executions.log"), "a") as log:
            log.write(f"{ctx.input} {os.getpid()}\n")
    return ctx.input * ctx.input


squares_slowly = (
    WorkflowBuilder("map-squares-slow", "Square each chunk, 2 ms each", input=Doc)
    .pipe(split)
    .map(slow_square, over="chunks")
    .build()
)

WORKFLOWS = [squares, squares_two_at_a_time, squares_tolerant, squares_by_field, squares_slowly]
