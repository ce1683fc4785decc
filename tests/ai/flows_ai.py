"""Workflows for the AI tests. ``PLAN`` tells the stages which model to call, how often and with what options."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from pydantic import BaseModel

from django_workflow_engine import WorkflowBuilder, define_stage
from django_workflow_engine.core.batch import CompletionError, NotReady, Ready, Suspend, define_async_batch_stage

PLAN: dict[str, Any] = {}


def reset() -> None:
    PLAN.clear()
    PLAN.update(model="gpt-4o-mini", calls=1, options={"mock_response": "ok"}, connection={})


reset()


class Topic(BaseModel):
    topic: str


class Text(BaseModel):
    text: str


@define_stage(id="write", name="Write", input=Topic, output=Text)
def write(ctx):
    ai = ctx.ai()
    texts = [
        ai.generate_text(PLAN["model"], f"Write about {ctx.input.topic}", **PLAN["options"]).text
        for _ in range(PLAN["calls"])
    ]
    return Text(text=" | ".join(texts))


@define_stage(id="polish", name="Polish", input=Text, output=Text)
def polish(ctx):
    result = ctx.ai().generate_text(PLAN["model"], f"Polish: {ctx.input.text}", **PLAN["options"])
    return Text(text=result.text)


@define_stage(id="async-write", name="Async write", input=Topic, output=Text)
async def async_write(ctx):
    result = ctx.ai().generate_text(PLAN["model"], f"Write about {ctx.input.topic}", **PLAN["options"])
    return Text(text=result.text)


ai_async = WorkflowBuilder("ai-async", "AI async", input=Topic, output=Text).pipe(async_write).build()

ai_text = WorkflowBuilder("ai-text", "AI text", input=Topic, output=Text).pipe(write).pipe(polish).build()


class Answers(BaseModel):
    answers: dict[str, str]


def check_batch(state, ctx):
    results = ctx.ai().get_batch_results(state, **PLAN["connection"])
    if not results.done:
        return NotReady(next_check_in=0)
    if not results.completed:
        return CompletionError(f"batch {results.batch_id} ended {results.status}")
    return Ready(output={"answers": {item.id: item.text or item.error for item in results.items}})


@define_async_batch_stage(id="batch", name="Batch", input=Topic, output=Answers, check_completion=check_batch)
def batch(ctx):
    requests = [{"id": f"q{i}", "prompt": f"{ctx.input.topic} #{i}"} for i in (1, 2)]
    handle = ctx.ai().submit_batch(PLAN["model"], requests, **PLAN["connection"])
    return Suspend(state=handle.to_state(), next_poll_at=timezone.now(), poll_interval=0.01)


ai_batch = WorkflowBuilder("ai-batch", "AI batch", input=Topic, output=Answers).pipe(batch).build()

WORKFLOWS = [ai_text, ai_batch, ai_async]


# -- the journal: a stage that makes AI calls and then dies -------------------------------------------------

JOURNAL: dict[str, Any] = {}


class WorkerKilled(BaseException):  # a BaseException: escapes the engine like a dead process
    """Raised by a stage to stop as a killed worker does: nothing after it runs, the job stays leased."""


class City(BaseModel):
    name: str
    population: int


class LookupArgs(BaseModel):
    city: str


def lookup(args: LookupArgs) -> dict:
    """Population of a city."""
    JOURNAL["tool_runs"] += 1
    return {"city": args.city, "population": 700000}


def reset_journal(**plan: Any) -> None:
    JOURNAL.clear()
    JOURNAL.update(kind="text", prompts=["first", "second"], crashes=[], options={}, tool_runs=0, **plan)


def _call(ai: Any, prompt: str) -> str:
    kind, options = JOURNAL["kind"], JOURNAL["options"]
    if kind == "text":
        return ai.generate_text("fake-model", prompt, **options).text
    if kind == "object":
        return ai.generate_object("fake-model", prompt, schema=City, **options).object.name
    if kind == "embed":
        return str(ai.embed("openai/text-embedding-3-small", [prompt], **options).embedding)
    if kind == "stream":
        return "".join(ai.stream_text("fake-model", prompt, **options))
    if kind == "tools":
        return ai.generate_text("fake-model", prompt, tools=[lookup], **options).text
    raise ValueError(kind)


@define_stage(id="think", name="Think", input=Topic, output=Text)
def think(ctx):
    """Makes one AI call per prompt of ``JOURNAL["prompts"]``; ``JOURNAL["crashes"]`` holds, per execution,
    ``(after_calls, "kill" | "raise")`` or ``None``."""
    ai = ctx.ai()
    crash = JOURNAL["crashes"].pop(0) if JOURNAL["crashes"] else None
    parts = []
    for i, prompt in enumerate(JOURNAL["prompts"]):
        if crash is not None and crash[0] == i:
            break
        parts.append(_call(ai, f"{ctx.input.topic}: {prompt}"))
    if crash is not None:
        if crash[1] == "kill":
            raise WorkerKilled
        raise RuntimeError("flaky step after the AI calls")
    return Text(text=" | ".join(parts))


@define_async_batch_stage(id="submit", name="Submit", input=Topic, output=Answers, check_completion=check_batch)
def submit(ctx):
    handle = ctx.ai().submit_batch("gpt-4o-mini", [{"id": "q1", "prompt": ctx.input.topic}], **PLAN["connection"])
    if JOURNAL["crashes"] and JOURNAL["crashes"].pop(0):
        raise WorkerKilled
    return Suspend(state=handle.to_state(), next_poll_at=timezone.now(), poll_interval=0.01)


ai_journal = WorkflowBuilder("ai-journal", "AI journal", input=Topic, output=Text).pipe(think).build()
ai_journal_batch = (
    WorkflowBuilder("ai-journal-batch", "AI journal batch", input=Topic, output=Answers).pipe(submit).build()
)

WORKFLOWS += [ai_journal, ai_journal_batch]
reset_journal()
