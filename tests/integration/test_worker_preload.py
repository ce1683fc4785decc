"""A worker imports litellm up front only when a registered stage uses ``ctx.ai()`` (or it forks per job)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from django_workflow_engine.hosts.worker import stage_uses_ai
from tests import flows
from tests.ai import flows_ai

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
import django
django.setup()
from unittest import mock
from django_workflow_engine.hosts.worker import Worker
from django_workflow_engine.registry import registry
from tests import flows
from tests.ai import flows_ai
workflows = {"plain": [flows.diamond, flows.triple], "ai": [flows.diamond, flows_ai.ai_text]}[sys.argv[1]]
with mock.patch.object(registry, "all", return_value=workflows):
    Worker(transport="database", fork=sys.argv[2] == "fork").preload()
print("litellm" in sys.modules)
"""


def test_stage_uses_ai_sees_ctx_ai_calls():
    assert stage_uses_ai(flows_ai.ai_text.stage("write"))
    assert not any(stage_uses_ai(stage) for stage in flows.diamond.stages())


@pytest.mark.parametrize(
    ("workflows", "mode", "imported"),
    [("plain", "simple", "False"), ("ai", "simple", "True"), ("plain", "fork", "True")],
)
def test_preload_imports_litellm_only_when_needed(workflows, mode, imported):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, workflows, mode], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == imported
