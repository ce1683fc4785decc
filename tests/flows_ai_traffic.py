"""A workflow whose one stage makes ``n`` mock AI calls, for the rate-limit tests with real worker processes."""

from __future__ import annotations

import os

from pydantic import BaseModel

from django_workflow_engine import WorkflowBuilder, define_stage


class Burst(BaseModel):
    n: int = 10
    model: str = "gpt-4o-mini"


class Answers(BaseModel):
    answers: list[str]
    worker: str | None = None  # the DWE_TEST_WORKER of the process that completed the stage


@define_stage(id="calls", name="Calls", input=Burst, output=Answers)
def calls(ctx):
    ai = ctx.ai()
    return Answers(
        answers=[
            ai.generate_text(ctx.input.model, f"{ctx.run_id} call {i}", mock_response=f"answer {i}").text
            for i in range(ctx.input.n)
        ],
        worker=os.environ.get("DWE_TEST_WORKER"),
    )


ai_burst = WorkflowBuilder("ai-burst", "AI burst", input=Burst, output=Answers).pipe(calls).build()
