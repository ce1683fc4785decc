"""System checks for the AI traffic settings (E060-E064): each names the setting and what to fix."""

from __future__ import annotations

import pytest
from django.test import override_settings

from django_workflow_engine.ai.checks import check_ai_traffic
from tests.ai.conftest import engine_settings


def errors_for(**values):
    with override_settings(WORKFLOW_ENGINE=engine_settings(**values)):
        return check_ai_traffic()


@pytest.mark.parametrize(
    "limits",
    [
        {},
        {"gpt-4o-mini": {"rpm": 500, "tpm": 200_000}},
        {"anthropic/*": {"rpm": 50}},
        {"openai/gpt-4o-mini": {"tpm": 1000}},
        {"fake-model": {"rpm": 5}},  # a key of AI_MODELS
        {"openai/fake-*": {"rpm": 5}},  # matches AI_MODELS' model "openai/fake-model"
    ],
)
def test_valid_rate_limits(limits):
    assert errors_for(AI_RATE_LIMITS=limits) == []


@pytest.mark.parametrize(
    ("limits", "needle"),
    [
        (["gpt-4o-mini"], "must be a dict"),
        ({"gpt-4o-mini": 500}, "'gpt-4o-mini' must map to a dict"),
        ({"gpt-4o-mini": {}}, "sets neither 'rpm'"),
        ({"gpt-4o-mini": {"rpm": 0}}, "'rpm' must be a positive whole number, not 0"),
        ({"gpt-4o-mini": {"rpm": 2.5}}, "'rpm' must be a positive whole number, not 2.5"),
        ({"gpt-4o-mini": {"rpm": True}}, "'rpm' must be a positive whole number, not True"),
        ({"gpt-4o-mini": {"tpm": float("nan")}}, "'tpm' must be a positive whole number, not nan"),
        ({"gpt-4o-mini": {"rpm": 5, "rph": 5}}, "unknown key(s) 'rph'"),
    ],
)
def test_malformed_rate_limits_are_e060(limits, needle):
    errors = errors_for(AI_RATE_LIMITS=limits)
    assert {e.id for e in errors} == {"django_workflow_engine.E060"}
    assert any(needle in e.msg for e in errors), [e.msg for e in errors]
    assert all(e.msg.startswith("WORKFLOW_ENGINE['AI_RATE_LIMITS']") for e in errors)


@pytest.mark.parametrize("pattern", ["gpt-4o-mnii", "antropic/*", "openai/nothing-like-this"])
def test_an_unknown_model_pattern_is_e061(pattern):
    errors = errors_for(AI_RATE_LIMITS={pattern: {"rpm": 5}})
    assert [e.id for e in errors] == ["django_workflow_engine.E061"]
    assert f"{pattern!r} matches no model" in errors[0].msg
    assert "anthropic/*" in errors[0].hint


def test_the_limiter_choice_is_e062():
    assert [e.id for e in errors_for(AI_RATE_LIMITER="memcached")] == ["django_workflow_engine.E062"]
    with override_settings(RQ_QUEUES={}):
        errors = errors_for(AI_RATE_LIMITER="redis")
    assert [e.id for e in errors] == ["django_workflow_engine.E062"]
    assert "RQ_QUEUES" in errors[0].msg


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("AI_RATE_LIMIT_WAIT_SECONDS", -1),
        ("AI_RATE_LIMIT_WAIT_SECONDS", float("nan")),
        ("AI_RATE_LIMIT_WINDOW_SECONDS", 0),
        ("AI_RATE_LIMIT_WINDOW_SECONDS", "60"),
        ("AI_RATE_LIMIT_RETRY_AFTER_SECONDS", None),
    ],
)
def test_bad_numbers_are_e063(key, value):
    errors = errors_for(**{key: value})
    assert [e.id for e in errors] == ["django_workflow_engine.E063"]
    assert key in errors[0].msg


def test_a_zero_wait_is_allowed():
    assert errors_for(AI_RATE_LIMIT_WAIT_SECONDS=0) == []


@pytest.mark.parametrize("value", [False, True, 3600, 0.5, None])
def test_valid_cache_settings(value):
    assert errors_for(AI_CACHE=value) == []


@pytest.mark.parametrize("value", [0, -5, "1h", float("inf"), {"ttl": 5}])
def test_bad_cache_settings_are_e064(value):
    errors = errors_for(AI_CACHE=value)
    assert [e.id for e in errors] == ["django_workflow_engine.E064"]
    assert "AI_CACHE" in errors[0].msg


def test_manage_py_check_reports_them():
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    bad = engine_settings(AI_RATE_LIMITS={"gpt-4o-mnii": {"rpm": 5}})
    with override_settings(WORKFLOW_ENGINE=bad), pytest.raises(SystemCheckError, match="E061"):
        call_command("check")
