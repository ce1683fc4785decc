"""Which provider errors send a call to the next model, and how long a 429 asks to wait."""

from __future__ import annotations

from datetime import timedelta
from email.utils import format_datetime

import httpx
import pytest
from django.utils import timezone

from django_workflow_engine.ai.costs import load_litellm
from django_workflow_engine.ai.traffic import classify, retry_after


def error(name: str, **kwargs):
    cls = getattr(load_litellm(), name)
    if name in ("Timeout", "APIConnectionError"):
        return cls(message="x", llm_provider="openai", model="m", **kwargs)
    return cls("x", llm_provider="openai", model="m", **kwargs)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("RateLimitError", "rate_limit"),
        ("Timeout", "transient"),
        ("APIConnectionError", "transient"),
        ("InternalServerError", "transient"),
        ("ServiceUnavailableError", "transient"),
        ("BadRequestError", None),
        ("ContextWindowExceededError", None),
        ("AuthenticationError", None),
        ("NotFoundError", None),
    ],
)
def test_classify(name, kind):
    assert classify(error(name)) == kind


def test_classify_other_exceptions_by_status():
    class Gateway(Exception):
        status_code = 502

    assert classify(Gateway()) == "transient"
    assert classify(ValueError("no")) is None


def response(**headers):
    return httpx.Response(429, headers=headers, request=httpx.Request("POST", "https://example.invalid"))


def test_retry_after_seconds_milliseconds_and_http_dates():
    assert retry_after(error("RateLimitError", response=response(**{"retry-after": "7"})), 20) == 7
    assert retry_after(error("RateLimitError", response=response(**{"retry-after-ms": "1500"})), 20) == 1.5
    when = format_datetime(timezone.now() + timedelta(seconds=90), usegmt=True)
    assert 85 <= retry_after(error("RateLimitError", response=response(**{"retry-after": when})), 20) <= 90


@pytest.mark.parametrize("headers", [{}, {"retry-after": "soon"}])
def test_retry_after_falls_back_to_the_default(headers):
    assert retry_after(error("RateLimitError", response=response(**headers)), 20) == 20
    assert retry_after(ValueError("no headers"), 20) == 20
