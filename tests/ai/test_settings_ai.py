"""System check for the AI budget setting."""

from __future__ import annotations

import pytest
from django.test import override_settings

from django_workflow_engine.checks import check_settings
from tests.ai.conftest import engine_settings


@pytest.mark.parametrize("value", [None, 0, 0.5, "1.25", {"doc-pipeline": 2, "other": "0.1"}])
def test_valid_default_budgets(value):
    with override_settings(WORKFLOW_ENGINE=engine_settings(AI_DEFAULT_MAX_COST=value)):
        assert [e.id for e in check_settings()] == []


@pytest.mark.parametrize("value", [-1, "lots", True, {"doc-pipeline": "x"}, ["1"], "NaN"])
def test_invalid_default_budgets_are_reported(value):
    with override_settings(WORKFLOW_ENGINE=engine_settings(AI_DEFAULT_MAX_COST=value)):
        errors = check_settings()
    assert [e.id for e in errors] == ["django_workflow_engine.E010"]
    assert "AI_DEFAULT_MAX_COST" in errors[0].msg
