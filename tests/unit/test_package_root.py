"""The package root: ``engine`` is the Engine instance, its module is ``facade`` (patchable), and the
models' names and the AI helper factory are importable from the root without importing Django or litellm
until they are used."""

from __future__ import annotations

import subprocess
import sys
import types
from unittest import mock

import django_workflow_engine
from django_workflow_engine import Engine, engine


def test_engine_is_the_instance_and_its_module_is_facade():
    import django_workflow_engine.facade as facade

    assert isinstance(facade, types.ModuleType)
    assert isinstance(django_workflow_engine.engine, Engine)
    assert facade.engine is engine
    from django_workflow_engine.engine import Engine as by_old_path  # the module's old name still imports

    assert by_old_path is Engine


def test_a_name_of_the_facade_module_can_be_patched():
    with mock.patch("django_workflow_engine.facade.run_until_idle") as patched:
        patched.return_value = "drained"
        assert engine.run_until_idle() == "drained"
    patched.assert_called_once()
    assert patched.call_args.args[0] is engine.kernel


def test_models_status_and_ai_factory_are_importable_from_the_root_lazily():
    code = """
import sys
import django_workflow_engine
loaded = [m for m in sys.modules if m.split('.')[0] in ('django', 'litellm') or m.endswith('.models')]
assert loaded == [], loaded
import django
django.setup()
from django_workflow_engine import Status, WorkflowRun, create_ai_helper
from django_workflow_engine.ai import create_ai_helper as factory
from django_workflow_engine.models import WorkflowRun as model
from django_workflow_engine.models.status import Status as choices
assert (WorkflowRun, Status, create_ai_helper) == (model, choices, factory)
assert Status.COMPLETED == "COMPLETED" and Status.COMPLETED.label == "Completed"
assert 'litellm' not in sys.modules
try:
    django_workflow_engine.NoSuchName
except AttributeError as exc:
    assert "NoSuchName" in str(exc)
else:
    raise AssertionError("no AttributeError")
print("ok")
"""
    env = {"DJANGO_SETTINGS_MODULE": "tests.settings_sqlite_default", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=".")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
