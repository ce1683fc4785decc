"""The example pipeline, ``document-insights``: plain Python stages, no AI calls.

    ingest ──► keywords ─┐
           └─► stats ────┴─► report

``ingest`` normalises the text once; ``keywords`` and ``stats`` run in parallel on its output; ``report``
receives ``{"keywords": ..., "stats": ...}`` and assembles the final output. Every stage has pydantic models
for what it takes and returns, so bad input is refused before a run is created, and every stored output is
checked. To add a stage (an AI summary, say), define it like these and add it to the parallel group.
"""

from __future__ import annotations

import re
from collections import Counter

from pydantic import BaseModel, Field

from django_workflow_engine import WorkflowBuilder, define_stage

WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
SENTENCE_END_RE = re.compile(r"[.!?]+(?:\s|$)")
_STOPWORDS_TEXT = """
a an and are as at be but by for from has have he her his i in is it its of on or our she so that the their them
they this to was we were what when which who will with you your not can all also into than then there these those
been being do does did over under more most such each every make would why only still just very
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


# --- schemas ---------------------------------------------------------------------------------------------------


class Document(BaseModel):
    """Workflow input."""

    title: str = Field(default="Untitled", max_length=200)
    text: str = Field(min_length=1, description="The document body.")


class Ingested(BaseModel):
    title: str
    text: str = Field(description="Whitespace-normalised text.")
    words: list[str] = Field(description="Lower-cased words, in order.")
    word_count: int


class KeywordsConfig(BaseModel):
    top_n: int = Field(default=5, ge=1, le=50, description="How many keywords to keep.")


class Keyword(BaseModel):
    word: str
    count: int


class Keywords(BaseModel):
    keywords: list[Keyword]


class Stats(BaseModel):
    sentences: int
    avg_word_length: float


class ReportInput(BaseModel):
    """What ``report`` receives: the outputs of the parallel group, by stage id."""

    keywords: Keywords
    stats: Stats


class Report(BaseModel):
    """Workflow output."""

    title: str
    word_count: int
    sentences: int
    avg_word_length: float
    keywords: list[str]
    summary: str


# --- stages ----------------------------------------------------------------------------------------------------


@define_stage(
    id="ingest",
    name="Ingest",
    description="Normalise whitespace and split into words.",
    input=Document,
    output=Ingested,
)
def ingest(ctx):
    text = " ".join(ctx.input.text.split())
    words = WORD_RE.findall(text.lower())
    ctx.log("INFO", "Ingested document", title=ctx.input.title, words=len(words))
    return Ingested(title=ctx.input.title, text=text, words=words, word_count=len(words))


@define_stage(
    id="keywords",
    name="Keywords",
    description="Most frequent non-stopwords.",
    input=Ingested,
    output=Keywords,
    config=KeywordsConfig,
)
def keywords(ctx):
    counts = Counter(w for w in ctx.input.words if w not in STOPWORDS and len(w) > 2)
    # Ties are broken alphabetically so the output does not depend on word order.
    top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[: ctx.config.top_n]
    ctx.log("INFO", "Picked keywords", top_n=ctx.config.top_n, distinct_words=len(counts))
    return Keywords(keywords=[Keyword(word=w, count=c) for w, c in top])


@define_stage(
    id="stats", name="Statistics", description="Sentence count and average word length.", input=Ingested, output=Stats
)
def stats(ctx):
    words = ctx.input.words
    sentences = len(SENTENCE_END_RE.findall(ctx.input.text)) or (1 if words else 0)
    avg = round(sum(map(len, words)) / len(words), 2) if words else 0.0
    ctx.log("INFO", "Computed statistics", sentences=sentences, avg_word_length=avg)
    return Stats(sentences=sentences, avg_word_length=avg)


@define_stage(
    id="report",
    name="Report",
    description="Combine keywords and statistics into the final report.",
    input=ReportInput,
    output=Report,
    dependencies=("ingest",),
)
def report(ctx):
    ingested = Ingested.model_validate(ctx.require("ingest"))
    words = [k.word for k in ctx.input.keywords.keywords]
    summary = f"{ingested.title!r}: {ingested.word_count} words in {ctx.input.stats.sentences} sentence(s)" + (
        f", mostly about {', '.join(words[:3])}." if words else "."
    )
    ctx.log("INFO", "Report ready", keywords=len(words))
    return Report(
        title=ingested.title,
        word_count=ingested.word_count,
        sentences=ctx.input.stats.sentences,
        avg_word_length=ctx.input.stats.avg_word_length,
        keywords=words,
        summary=summary,
    )


document_insights = (
    WorkflowBuilder(
        "document-insights",
        "Document insights",
        "Keywords and statistics for a text document.",
        input=Document,
        output=Report,
    )
    .pipe(ingest)
    .parallel([keywords, stats])
    .pipe(report)
    # A schedule declared in code: synced to a WorkflowSchedule row by the maintenance tick, fired by it on
    # weekday mornings, Berlin time (docs/schedules.md). An operator's change in the admin wins over this.
    .schedule(
        "morning-digest",
        cron="0 7 * * 1-5",
        timezone="Europe/Berlin",
        input={"title": "Morning digest", "text": "Scheduled runs start from a row, once per fire time."},
        catchup="latest",
    )
    .build()
)
