"""Offline answers for the ticket pipeline: what the example project uses when no provider key is set.

A :class:`~django_workflow_engine.testing.MockAI` (the same tool tests get as the ``mock_ai`` fixture) answers
every AI call with a deterministic reply worked out from the ticket in the prompt: a summary built from the
ticket's own sentences, a keyword-based classification, regex-extracted entities, bag-of-words embeddings (so
the nearest knowledge-base article really is the closest in wording) and keyword-based scores. Replies go
through litellm's ``mock_response``, so every call is still an ``AICall`` row, priced as the named model
(``gpt-4o-mini``, ``text-embedding-3-small``) would be for litellm's mock usage of 10 + 20 tokens.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Any

from django_workflow_engine.testing import MockAI, MockCall

EMBEDDING_DIMENSIONS = 256
TICKET_RE = re.compile(r"Ticket (?P<id>\S+) from (?P<customer>.+?) via (?P<channel>\w+)\nSubject: (?P<subject>.*?)\n\n")
SENTENCE_RE = re.compile(r"(?<=[.!?])\s+")
PRODUCTS = ("Pro annual plan", "Business plan", "desktop app", "mobile app", "PDF export", "Okta", "SSO")
_STOPWORDS_TEXT = """
a an and are as at be but by for from has have i in is it its of on or our so that the this to was we with you
your my me not no
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())

# (category, words that suggest it), checked in order.
CATEGORY_WORDS = (
    ("cancellation", ("cancel", "another tool", "leave")),
    ("billing", ("refund", "charged", "invoice", "billing", "payment")),
    ("technical", ("crash", "error", "bug", "fails", "failing", "slow", "broken")),
    ("how_to", ("how do i", "how can i", "guide", "set up", "setting it up")),
)
URGENT_WORDS = ("blocking", "tomorrow", "right now", "asap", "down for everyone")
HIGH_WORDS = ("as soon as possible", "cancel", "twice", "second time", "this week")
LOW_WORDS = ("no rush", "next month", "whenever")
NEGATIVE_WORDS = ("twice", "crash", "unreliable", "not answered", "cancel", "blocking", "failing", "slow")
POSITIVE_WORDS = ("thanks", "love", "great", "happy")

# criterion -> (base score, [(words, points added when any is present)])
SCORE_RULES: dict[str, tuple[int, list[tuple[tuple[str, ...], int]]]] = {
    "urgency": (3, [(URGENT_WORDS, 5), (("as soon as possible", "this week", "finance team"), 3), (LOW_WORDS, -1)]),
    "churn_risk": (
        2,
        [(("cancel", "another tool", "move the team"), 6), (("second time", "not answered", "twice"), 3)],
    ),
    "effort": (
        2,
        [(("crash", "error", "sync", "failing", "update"), 5), (("refund", "duplicate"), 2), (("sso", "okta"), 2)],
    ),
}


def ticket_fields(prompt: str) -> dict[str, str]:
    """The ticket fields of a prompt built with ``Ingested.as_prompt()`` (empty values if it has none)."""
    match = TICKET_RE.search(prompt)
    if not match:
        return {"id": "", "customer": "The customer", "channel": "", "subject": "", "text": prompt}
    return {**match.groupdict(), "text": prompt[match.end() :].split("\n\n")[0]}


def _has(text: str, words: tuple[str, ...]) -> list[str]:
    lowered = text.lower()
    return [w for w in words if w in lowered]


def summary(call: MockCall) -> str:
    ticket = ticket_fields(call.prompt)
    sentences = [s for s in SENTENCE_RE.split(ticket["text"]) if s]
    person = ticket["customer"].split(" (")[0]
    first = sentences[0].removeprefix("Hi, ").removeprefix("Honestly ") if sentences else ticket["subject"]
    ask = next((s for s in sentences[1:] if _has(s, ("please", "would like", "is there", "if this", "we have"))), "")
    text = f"{person} reports: {first[0].lower() + first[1:] if first else ''}"
    return f"{text} {ask}".strip()


def classification(call: MockCall) -> dict[str, Any]:
    text = ticket_fields(call.prompt)["text"] + " " + ticket_fields(call.prompt)["subject"]
    category = next((name for name, words in CATEGORY_WORDS if _has(text, words)), "other")
    if _has(text, URGENT_WORDS):
        priority = "urgent"
    elif _has(text, HIGH_WORDS):
        priority = "high"
    elif _has(text, LOW_WORDS):
        priority = "low"
    else:
        priority = "normal"
    sentiment = "negative" if _has(text, NEGATIVE_WORDS) else "positive" if _has(text, POSITIVE_WORDS) else "neutral"
    confidence = 0.92 if category != "other" else 0.55
    return {"category": category, "priority": priority, "sentiment": sentiment, "confidence": confidence}


def entities(call: MockCall) -> dict[str, Any]:
    text = ticket_fields(call.prompt)["text"]
    return {
        "products": [p for p in PRODUCTS if p.lower() in text.lower()],
        "references": re.findall(r"\b(?:ORD|INV|ACC)-\d+\b", text),
        "error_codes": re.findall(r"\bE-\d{3,5}\b", text),
        "amounts": re.findall(r"[$€£]\d[\d,]*(?:\.\d{2})?", text),
    }


def criterion_score(call: MockCall) -> dict[str, Any]:
    criterion = re.search(r"Rate this support ticket for (\w+)\.", call.prompt)
    name = criterion.group(1) if criterion else "urgency"
    base, rules = SCORE_RULES.get(name, (5, []))
    ticket = ticket_fields(call.prompt)
    text = f"{ticket['subject']} {ticket['text']}"
    score, reasons = base, []
    for words, points in rules:
        found = _has(text, words)
        if found:
            score += points
            reasons.append(f'"{found[0]}"')
    score = max(1, min(10, score))
    reason = f"The ticket mentions {', '.join(reasons)}." if reasons else "Nothing in the ticket raises it."
    return {"score": score, "reason": reason}


def embedding(call: MockCall) -> list[float]:
    """A normalised bag of word stems hashed into 256 dimensions: texts sharing words point the same way."""
    vector = [0.0] * EMBEDDING_DIMENSIONS
    for word in re.findall(r"[a-z0-9]+", call.prompt.lower()):
        if word in STOPWORDS or len(word) < 3:
            continue
        bucket = int(hashlib.sha256(word[:5].encode()).hexdigest(), 16) % EMBEDDING_DIMENSIONS
        vector[bucket] += 1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [round(x / norm, 6) for x in vector]


def offline_ai() -> MockAI:
    """A :class:`MockAI` scripted with the replies above (not started). Its batches are shared through files in
    ``MEDIA_ROOT/offline-batches``, so a batch the demo (or a worker) submitted can be polled by any process of the
    site, as a provider's can."""
    from django.conf import settings

    mock = MockAI(batch_dir=Path(settings.MEDIA_ROOT) / "offline-batches")
    mock.object(classification, contains="Classify this support ticket")
    mock.object(entities, contains="Extract the entities")
    mock.object(criterion_score, contains="Rate this support ticket for")
    mock.text(summary, contains="Summarize this support ticket")
    mock.embedding(embedding)
    return mock


_started: MockAI | None = None


def start_offline_ai() -> MockAI:
    """Answer this process's AI calls offline from now on (idempotent). Imports litellm."""
    global _started
    if _started is None:
        _started = offline_ai().start()
    return _started


def stop_offline_ai() -> None:
    """Undo :func:`start_offline_ai` (tests use it; a process normally keeps the offline answers until exit)."""
    global _started
    if _started is not None:
        _started.stop()
        _started = None
