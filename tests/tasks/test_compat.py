"""Which tasks framework the backend uses, and the error when Django 5.2 lacks the backport."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import django
import pytest
from django.core.exceptions import ImproperlyConfigured

from django_workflow_engine.tasks import compat

ROOT = Path(__file__).resolve().parents[2]


def test_the_framework_follows_the_django_version():
    expected = "django.tasks" if django.VERSION >= (6, 0) else "django_tasks"
    assert expected == compat.FRAMEWORK
    assert compat.Task.__module__ == f"{compat.FRAMEWORK}.base"


@pytest.mark.skipif(django.VERSION >= (6, 0), reason="Django 6 has the framework built in")
def test_without_the_backport_django_52_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "django_tasks", None)  # as if django-tasks were not installed
    monkeypatch.delitem(sys.modules, "django_workflow_engine.tasks.compat")
    with pytest.raises(ImproperlyConfigured, match=r'pip install "django-workflow-engine\[tasks\]".*django_tasks'):
        importlib.import_module("django_workflow_engine.tasks.compat")


def test_the_package_and_its_workflow_import_without_the_framework():
    # workflows.py (autodiscovered in every project) must not need django.tasks / django_tasks.
    import subprocess

    code = (
        "import sys; sys.modules['django_tasks'] = None; sys.modules['django.tasks'] = None; "
        "import django_workflow_engine.tasks, django_workflow_engine.workflows"
    )
    env = {"DJANGO_SETTINGS_MODULE": "tests.settings", "PATH": ""}
    script = f"import django; django.setup(); {code}"
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120, cwd=ROOT)
