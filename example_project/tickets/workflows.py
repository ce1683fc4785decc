"""The AI example pipeline, ``ticket-intelligence``: support-ticket triage with real model calls.

    ingest ──► summarize ─┐
           ├─► classify ──┼─► embed ──► score (provider batch) ──► report ──► review (a person) ──► close
           └─► extract ───┘

* ``summarize`` writes a two-sentence summary (``generate_text``);
* ``classify`` fills in a pydantic model with enum fields (``generate_object``): category, priority, sentiment;
* ``extract`` pulls out products, references, error codes and amounts (``generate_object``);
* ``embed`` embeds the summary and the knowledge-base articles in one call and suggests the nearest article;
* ``score`` is an async-batch stage: it submits three scoring requests (urgency, churn risk, effort) as one
  provider batch at batch prices, suspends, and resumes when the batch is done;
* ``report`` routes the ticket to a team and says whether to escalate;
* ``review`` is a signal stage: an escalated ticket waits for a person to approve (or reroute, or decline) the
  escalation, answered in the admin form of the run or with ``engine.signal(run_id, "escalation-review", ...)``;
  any other ticket goes straight on. Nobody answering within three days leaves the pipeline's decision standing;
* ``close`` applies the review to the report.

Every call goes through ``ctx.ai()``, so each is an ``AICall`` row with tokens and cost, and the run's
``total_cost`` grows as it goes. Without a provider key the example project answers these calls offline
(:mod:`tickets.offline`); the stages do not know the difference, and ``report`` says which it was.
"""

from __future__ import annotations

import math

from django_workflow_engine import (
    CompletionError,
    NotReady,
    Ready,
    Suspend,
    WorkflowBuilder,
    define_async_batch_stage,
    define_signal_stage,
    define_stage,
)
from django_workflow_engine.testing import active_mock

from .knowledge import ARTICLES
from .schemas import (
    ArticleMatch,
    Category,
    Classification,
    CriterionScore,
    EmbedConfig,
    Embedded,
    Enriched,
    Entities,
    Ingested,
    ModelConfig,
    Priority,
    Report,
    Review,
    ReviewedReport,
    ScoreConfig,
    Scores,
    Summary,
    Ticket,
)

SUPPORT_AGENT = "You are a senior customer-support analyst. Be precise and brief; never invent facts."
CRITERIA = {
    "urgency": "How urgently does the customer need an answer? 1 = whenever, 10 = right now.",
    "churn_risk": "How likely is this customer to cancel because of this? 1 = not at all, 10 = about to leave.",
    "effort": "How much work will resolving this take for our team? 1 = a canned reply, 10 = an engineering fix.",
}
TEAMS = {
    Category.BILLING: "Billing",
    Category.TECHNICAL: "Product support",
    Category.HOW_TO: "Customer success",
    Category.CANCELLATION: "Retention",
    Category.OTHER: "Front line",
}


@define_stage(id="ingest", name="Ingest", description="Normalise the ticket text.", input=Ticket, output=Ingested)
def ingest(ctx):
    text = " ".join(ctx.input.body.split())
    ctx.log("INFO", "Ingested ticket", ticket_id=ctx.input.ticket_id, channel=ctx.input.channel)
    return Ingested(
        ticket_id=ctx.input.ticket_id,
        customer=ctx.input.customer,
        channel=ctx.input.channel,
        subject=" ".join(ctx.input.subject.split()),
        text=text,
        word_count=len(text.split()),
    )


@define_stage(
    id="summarize",
    name="Summarize",
    description="Two-sentence summary (generate_text).",
    input=Ingested,
    output=Summary,
    config=ModelConfig,
)
def summarize(ctx):
    result = ctx.ai().generate_text(
        ctx.config.model,
        "Summarize this support ticket in at most two sentences: who is affected, what is wrong and what they "
        f"want.\n\n{ctx.input.as_prompt()}",
        system=SUPPORT_AGENT,
        temperature=0.2,
        max_tokens=120,
    )
    return Summary(summary=result.text.strip())


@define_stage(
    id="classify",
    name="Classify",
    description="Category, priority and sentiment as enums (generate_object).",
    input=Ingested,
    output=Classification,
    config=ModelConfig,
)
def classify(ctx):
    result = ctx.ai().generate_object(
        ctx.config.model,
        "Classify this support ticket. category: billing, technical, how_to, cancellation or other; priority: "
        "low, normal, high or urgent; sentiment: positive, neutral or negative; confidence between 0 and 1."
        f"\n\n{ctx.input.as_prompt()}",
        schema=Classification,
        system=SUPPORT_AGENT,
        temperature=0,
    )
    ctx.log("INFO", "Classified", category=result.object.category.value, attempts=result.attempts)
    return result.object


@define_stage(
    id="extract",
    name="Extract entities",
    description="Products, references, error codes and amounts (generate_object).",
    input=Ingested,
    output=Entities,
    config=ModelConfig,
)
def extract(ctx):
    result = ctx.ai().generate_object(
        ctx.config.model,
        "Extract the entities of this support ticket: products (products, plans or features), references "
        "(order, invoice or account numbers), error_codes and amounts (as written). Use empty lists for what is "
        f"not mentioned.\n\n{ctx.input.as_prompt()}",
        schema=Entities,
        system=SUPPORT_AGENT,
        temperature=0,
    )
    return result.object


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


@define_stage(
    id="embed",
    name="Embed",
    description="Embed the summary and the knowledge base in one call; suggest the nearest article.",
    input=Enriched,
    output=Embedded,
    config=EmbedConfig,
    dependencies=("ingest",),
)
def embed(ctx):
    subject = Ingested.model_validate(ctx.require("ingest")).subject
    query = f"{subject}. {ctx.input.summarize.summary}"
    texts = [query, *(f"{a['title']}: {a['text']}" for a in ARTICLES)]
    result = ctx.ai().embed(ctx.config.model, texts)
    ticket_vector, article_vectors = result.embeddings[0], result.embeddings[1:]
    scored = sorted(
        ((cosine(ticket_vector, v), a) for v, a in zip(article_vectors, ARTICLES, strict=True)),
        key=lambda pair: -pair[0],
    )
    similarity, article = scored[0]
    ctx.log("INFO", "Suggested article", article=article["id"], similarity=round(similarity, 3))
    return Embedded(
        suggested_article=ArticleMatch(id=article["id"], title=article["title"], similarity=round(similarity, 3)),
        dimensions=result.dimensions,
    )


def check_scores(state, ctx):
    """Polled until the batch is done; results are recorded (and priced) once, at the first poll that sees them."""
    results = ctx.ai().get_batch_results(state["batch"], schema=CriterionScore)
    if not results.done:
        ctx.log("INFO", "Batch still running", batch_id=results.batch_id, status=results.status)
        return NotReady()
    if not results.completed:
        return CompletionError(f"scoring batch {results.batch_id} ended {results.status}")
    items = results.by_id()
    failed = {name: item.error for name, item in items.items() if not item.ok}
    if failed:
        return CompletionError(f"scoring batch {results.batch_id}: {failed}")
    return Ready(output=Scores(**{name: items[name].object for name in CRITERIA}))


@define_async_batch_stage(
    id="score",
    name="Score (batch)",
    description="Urgency, churn risk and effort, scored in one provider batch at batch prices.",
    input=Embedded,
    output=Scores,
    config=ScoreConfig,
    dependencies=("ingest", "summarize"),
    check_completion=check_scores,
)
def score(ctx):
    if ctx.resume_state:  # re-executed after suspending (a crash): the batch was submitted already
        return Suspend(state=ctx.resume_state, poll_interval=ctx.config.poll_seconds)
    ticket = Ingested.model_validate(ctx.require("ingest"))
    summary = Summary.model_validate(ctx.require("summarize")).summary
    requests = [
        {
            "id": name,
            "prompt": f"Rate this support ticket for {name}. {question} Reply with a score and a one-sentence "
            f"reason.\n\nSummary: {summary}\n\n{ticket.as_prompt()}",
        }
        for name, question in CRITERIA.items()
    ]
    handle = ctx.ai().submit_batch(
        ctx.config.model, requests, system=SUPPORT_AGENT, schema=CriterionScore, temperature=0
    )
    ctx.log("INFO", "Submitted scoring batch", batch_id=handle.batch_id, requests=len(requests))
    return Suspend(
        state={"batch": handle.to_state()},
        poll_interval=ctx.config.poll_seconds,
        max_wait=ctx.config.max_wait_hours * 3600,
        custom_metrics={"batch_requests": len(requests)},
    )


@define_stage(
    id="report",
    name="Report",
    description="Route the ticket and decide whether to escalate.",
    input=Scores,
    output=Report,
    dependencies=("ingest", "summarize", "classify", "extract", "embed"),
)
def report(ctx):
    ticket = Ingested.model_validate(ctx.require("ingest"))
    label = Classification.model_validate(ctx.require("classify"))
    scores = {name: getattr(ctx.input, name).score for name in CRITERIA}
    escalate = label.priority is Priority.URGENT or scores["churn_risk"] >= 8
    route_to = TEAMS[label.category]
    if escalate and label.category is not Category.CANCELLATION and scores["churn_risk"] >= 8:
        route_to += " + Retention"
    ctx.log("INFO", "Routed", route_to=route_to, escalate=escalate)
    return Report(
        ticket_id=ticket.ticket_id,
        subject=ticket.subject,
        customer=ticket.customer,
        summary=Summary.model_validate(ctx.require("summarize")).summary,
        category=label.category,
        priority=label.priority,
        sentiment=label.sentiment,
        entities=Entities.model_validate(ctx.require("extract")),
        suggested_article=Embedded.model_validate(ctx.require("embed")).suggested_article,
        scores=scores,
        route_to=route_to,
        escalate=escalate,
        ai_mode="mock" if active_mock() is not None else "live",
    )


REVIEW_SIGNAL = "escalation-review"
REVIEW_TIMEOUT = 3 * 24 * 3600
UNANSWERED = Review(approved=True, note="Nobody answered within three days: the escalation stands.")


def brief_reviewer(ctx):
    """What the reviewer sees above the form; a ticket that is not escalated needs no review."""
    if not ctx.input.escalate:
        return Ready(output=Review(approved=False, note="Not escalated: no review needed."))
    ctx.log("INFO", "Waiting for a person to review the escalation", route_to=ctx.input.route_to)
    return {
        "ticket": f"{ctx.input.ticket_id}: {ctx.input.subject}",
        "customer": ctx.input.customer,
        "summary": ctx.input.summary,
        "suggested route": ctx.input.route_to,
        "scores": ctx.input.scores,
    }


review = define_signal_stage(
    id="review",
    name="Review escalation",
    description="A person approves, reroutes or declines the escalation (admin form or engine.signal).",
    signal=REVIEW_SIGNAL,
    input=Report,
    output=Review,
    prepare=brief_reviewer,
    timeout=REVIEW_TIMEOUT,
    on_timeout=UNANSWERED,
)


@define_stage(id="close", name="Close", input=Review, output=ReviewedReport, dependencies=("report",))
def close(ctx):
    report = Report.model_validate(ctx.require("report"))
    answer = ctx.input
    asked = report.escalate
    return ReviewedReport(
        **report.model_dump(exclude={"route_to", "escalate"}),
        route_to=(answer.route_to.strip() or report.route_to) if asked else report.route_to,
        escalate=asked and answer.approved,
        review=answer,
        reviewed_by=("nobody (timed out)" if answer == UNANSWERED else "person") if asked else "not needed",
    )


ticket_intelligence = (
    WorkflowBuilder(
        "ticket-intelligence",
        "Ticket intelligence",
        "Summarize, classify, extract, embed and batch-score a support ticket, route it, and have a person review "
        "an escalation.",
        input=Ticket,
        output=ReviewedReport,
    )
    .pipe(ingest)
    .parallel([summarize, classify, extract])
    .pipe(embed)
    .pipe(score)
    .pipe(report)
    .pipe(review)
    .pipe(close)
    .build()
)
