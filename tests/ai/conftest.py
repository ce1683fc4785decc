"""Fixtures for the AI tests: the fake OpenAI server, AI settings and the AI test workflows."""

from __future__ import annotations

import pytest
from django.test import override_settings

from django_workflow_engine.registry import registry
from tests.ai import flows_ai
from tests.ai.fake_openai import FakeOpenAI

# A made-up model priced through AI_MODELS and served by the fake server.
FAKE_MODEL = {
    "model": "openai/fake-model",
    "input_cost_per_token": 1e-6,
    "output_cost_per_token": 2e-6,
    "input_cost_per_token_batches": 5e-7,
    "output_cost_per_token_batches": 1e-6,
}


def engine_settings(**extra):
    from django.conf import settings

    return {**settings.WORKFLOW_ENGINE, "AI_MODELS": {"fake-model": FAKE_MODEL}, **extra}


@pytest.fixture(autouse=True)
def ai_settings():
    with override_settings(WORKFLOW_ENGINE=engine_settings()):
        yield


@pytest.fixture(autouse=True)
def ai_workflows():
    flows_ai.reset()
    flows_ai.reset_journal()
    for workflow in flows_ai.WORKFLOWS:
        registry.register(workflow)
    yield
    for workflow in flows_ai.WORKFLOWS:
        registry.unregister(workflow.id)
    flows_ai.reset()
    flows_ai.reset_journal()


@pytest.fixture
def fake():
    with FakeOpenAI() as server:
        yield server
    _close_litellm_clients()
    _close_litellm_event_loop()


def _close_litellm_event_loop() -> None:
    """litellm's service logging calls ``asyncio.get_event_loop()`` after a real HTTP call, which gives this
    thread a default event loop that nobody closes; a later ``asyncio.run`` (an ``async def`` stage) drops it
    unclosed. Close it here."""
    import asyncio
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            loop = asyncio.get_event_loop()
        except RuntimeError:  # none set (after set_event_loop(None), none is created)
            return
    if not loop.is_running():
        loop.close()
        asyncio.set_event_loop(None)


def _close_litellm_clients() -> None:
    """Close the HTTP clients litellm cached for the fake server, so no socket outlives its test."""
    import inspect

    from django_workflow_engine.ai.costs import load_litellm

    cache = load_litellm().in_memory_llm_clients_cache
    for key, client in list(cache.cache_dict.items()):
        close = getattr(client, "close", None)
        # Only synchronous clients are ours to close here; async ones belong to an event loop.
        if callable(close) and not inspect.iscoroutinefunction(close):
            close()
            cache.delete_cache(key)


@pytest.fixture
def conn(fake):
    """litellm options that send calls to the fake server."""
    return {"api_base": fake.api_base, "api_key": "test"}
