"""What each stage of ``ticket-intelligence`` takes and returns (pydantic models), and its config."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

# -- workflow input ---------------------------------------------------------------------------------------------


class Ticket(BaseModel):
    """Workflow input: one support ticket."""

    ticket_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$", description="Your ticket reference.")
    customer: str = Field(min_length=1, max_length=200)
    channel: Literal["email", "chat", "phone", "web"] = "email"
    subject: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=20_000)


class Ingested(BaseModel):
    ticket_id: str
    customer: str
    channel: str
    subject: str
    text: str = Field(description="Whitespace-normalised body.")
    word_count: int

    def as_prompt(self) -> str:
        """The ticket as every prompt shows it."""
        return (
            f"Ticket {self.ticket_id} from {self.customer} via {self.channel}\nSubject: {self.subject}\n\n{self.text}"
        )


# -- the parallel group -----------------------------------------------------------------------------------------


class Summary(BaseModel):
    summary: str = Field(min_length=1)


class Category(StrEnum):
    BILLING = "billing"
    TECHNICAL = "technical"
    HOW_TO = "how_to"
    CANCELLATION = "cancellation"
    OTHER = "other"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Sentiment(StrEnum):
    POSITIVE = "positive"
    NEUTRAL = "neutral"
    NEGATIVE = "negative"


class Classification(BaseModel):
    """``generate_object`` fills this in; the enums make a reply with an unknown label invalid."""

    category: Category
    priority: Priority
    sentiment: Sentiment
    confidence: float = Field(ge=0, le=1)


class Entities(BaseModel):
    products: list[str] = Field(default_factory=list, description="Products, plans or features mentioned.")
    references: list[str] = Field(default_factory=list, description="Order, invoice or account numbers.")
    error_codes: list[str] = Field(default_factory=list)
    amounts: list[str] = Field(default_factory=list, description="Money amounts, as written.")


class Enriched(BaseModel):
    """What ``embed`` receives: the outputs of the parallel group, by stage id."""

    summarize: Summary
    classify: Classification
    extract: Entities


# -- embed, score, report ---------------------------------------------------------------------------------------


class ArticleMatch(BaseModel):
    id: str
    title: str
    similarity: float


class Embedded(BaseModel):
    suggested_article: ArticleMatch
    dimensions: int


class CriterionScore(BaseModel):
    """One batch request's structured reply."""

    score: int = Field(ge=1, le=10)
    reason: str


class Scores(BaseModel):
    urgency: CriterionScore
    churn_risk: CriterionScore
    effort: CriterionScore


class Report(BaseModel):
    """Workflow output."""

    ticket_id: str
    subject: str
    customer: str
    summary: str
    category: Category
    priority: Priority
    sentiment: Sentiment
    entities: Entities
    suggested_article: ArticleMatch
    scores: dict[str, int]
    route_to: str
    escalate: bool
    ai_mode: Literal["live", "mock"] = Field(description="'mock' when the AI calls were answered by a MockAI.")


# -- human review of escalations --------------------------------------------------------------------------------


class Review(BaseModel):
    """A person's answer to an escalated ticket: the admin builds its form from this model."""

    approved: bool = Field(description="Escalate, routed as the pipeline suggests (or as you reroute it below).")
    route_to: str = Field(default="", max_length=100, description="Another team, to reroute it; blank keeps the route.")
    note: str = Field(default="", max_length=2000, json_schema_extra={"multiline": True})


class ReviewedReport(Report):
    """Workflow output: the report, with the review applied (``review`` says who decided)."""

    review: Review
    reviewed_by: Literal["person", "not needed", "nobody (timed out)"] = Field(
        description="Whether a person answered the review of an escalation."
    )


# -- config -----------------------------------------------------------------------------------------------------


class ModelConfig(BaseModel):
    model: str = Field(default="gpt-4o-mini", description="Any litellm model key, or a key of AI_MODELS.")


class EmbedConfig(BaseModel):
    model: str = "text-embedding-3-small"


class ScoreConfig(BaseModel):
    model: str = "gpt-4o-mini"
    poll_seconds: float = Field(default=60, gt=0, le=3600, description="How often to ask whether the batch is done.")
    max_wait_hours: float = Field(default=24, gt=0, le=48)
