"""A workflow that stops for a person: an escalated ticket waits for a reviewer's decision (signal 'review')."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from django_workflow_engine import WorkflowBuilder, define_signal_stage, define_stage


class Ticket(BaseModel):
    subject: str


class Review(BaseModel):
    decision: Literal["approve", "reject"]
    note: str = ""


@define_stage(id="triage", name="Triage", input=Ticket)
def triage(ctx):
    return {"subject": ctx.input.subject, "urgent": "!" in ctx.input.subject}


def show_reviewer(ctx):
    return {"summary": f"Ticket {ctx.input.subject!r} needs a decision"}


review = define_signal_stage(
    id="review", name="Human review", signal="review", input=Ticket, output=Review, prepare=show_reviewer
)
quick_review = define_signal_stage(
    id="quick_review",
    name="Review within 60 s, else approve",
    signal="review",
    input=Ticket,
    output=Review,
    timeout=60,
    on_timeout={"decision": "approve", "note": "no answer"},
)
strict_review = define_signal_stage(
    id="strict_review", name="Review within 60 s", signal="review", input=Ticket, output=Review, timeout=60
)


@define_stage(id="close", name="Close")
def close(ctx):
    for stage in ("review", "quick_review", "strict_review"):
        answer = ctx.optional(stage)
        if answer is not None:
            return {"closed": answer["decision"] == "approve", "note": answer["note"]}
    return {"closed": False}


escalation = (
    WorkflowBuilder("escalation", "Escalated ticket", input=Ticket).pipe(triage).pipe(review).pipe(close).build()
)
escalation_quick = (
    WorkflowBuilder("escalation-quick", "Escalated ticket, 60 s to answer", input=Ticket)
    .pipe(quick_review)
    .pipe(close)
    .build()
)
escalation_strict = (
    WorkflowBuilder("escalation-strict", "Escalated ticket, must be answered", input=Ticket)
    .pipe(strict_review)
    .pipe(close)
    .build()
)
