"""The start path through the public API: the engine's kernel is built once, rebuilt on a settings change."""

from __future__ import annotations

import pytest
from django.test import override_settings

from django_workflow_engine import engine
from django_workflow_engine.errors import InvalidInput
from django_workflow_engine.models import WorkflowRun
from tests import flows

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _reset():
    flows.reset()
    yield
    flows.reset()


def test_kernel_is_built_once_per_engine():
    kernel = engine.kernel
    assert engine.kernel is kernel
    engine.start("diamond", {"value": 1})
    assert engine.kernel is kernel


def test_override_settings_takes_effect_and_is_undone():
    before = engine.kernel
    assert before.deps.options.max_input_bytes == 1024 * 1024
    with override_settings(WORKFLOW_ENGINE={"MAX_INPUT_BYTES": 20, "MAX_ATTEMPTS": 7}):
        inside = engine.kernel
        assert inside is not before
        assert (inside.deps.options.max_input_bytes, inside.deps.options.max_attempts) == (20, 7)
        with pytest.raises(InvalidInput, match="limit is 20"):
            engine.start("diamond", {"value": 1234567890123456789012345})
        assert not WorkflowRun.objects.exists()
    after = engine.kernel
    assert after is not inside
    assert after.deps.options.max_input_bytes == 1024 * 1024
    assert engine.start("diamond", {"value": 1234567890123456789012345}).status == "RUNNING"


def test_settings_fixture_changes_rebuild_the_kernel(settings):
    settings.WORKFLOW_ENGINE = {"TRANSPORT": "database"}
    assert engine.kernel.deps.jobs.on_enqueue is None
    settings.WORKFLOW_ENGINE = {"TRANSPORT": "rq"}
    assert engine.kernel.deps.jobs.on_enqueue is not None
