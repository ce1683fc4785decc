"""Shared test configuration.

PostgreSQL tests run when the suite runs with ``DATABASE_URL`` pointing at PostgreSQL (the test command does a
second pass for that). Tests marked ``postgres`` skip on SQLite; tests marked ``redis`` skip when Redis is not
reachable. With ``WORKFLOW_ENGINE_REQUIRE_SERVICES=1`` (set by CI) an unreachable Redis fails instead.
"""

from __future__ import annotations

import os
import socket

import pytest

from tests.harness import make_kernel  # noqa: F401  (fixture shared by the kernel conformance suite)

REQUIRE_SERVICES = os.environ.get("WORKFLOW_ENGINE_REQUIRE_SERVICES") == "1"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def redis_available() -> bool:
    return _reachable("127.0.0.1", 6379)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from django.conf import settings

    on_postgres = "postgresql" in settings.DATABASES["default"]["ENGINE"]
    have_redis = None
    for item in items:
        if "postgres" in item.keywords and not on_postgres:
            item.add_marker(pytest.mark.skip(reason="PostgreSQL-only test; runs in the DATABASE_URL=postgres pass"))
        if "redis" in item.keywords:
            if have_redis is None:
                have_redis = redis_available()
            if not have_redis:
                if REQUIRE_SERVICES:
                    raise pytest.UsageError(
                        "WORKFLOW_ENGINE_REQUIRE_SERVICES=1 but Redis is not reachable on 127.0.0.1:6379"
                    )
                item.add_marker(pytest.mark.skip(reason="Redis is not reachable on 127.0.0.1:6379"))


@pytest.fixture
def fresh_flows():
    """``tests.flows``' call counts, gates and failure switches cleared before and after the test."""
    from tests import flows

    flows.reset()
    yield flows
    flows.reset()
