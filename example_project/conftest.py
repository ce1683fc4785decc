"""Lets the repository's test run (``tests.settings``) collect the example apps' tests.

pytest-django sets Django up before any conftest is imported, so ``documents`` and ``tickets`` cannot be added to
``INSTALLED_APPS`` from here. The apps have no models; all their tests need is their workflows in the registry,
which the ``document_insights`` fixture, or the plugin's ``workflow_runner`` given the workflow, provides. Under the example project's own settings (where ``documents`` is
installed and autodiscovered) the fixture finds it already registered and changes nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture
def document_insights() -> Iterator[Any]:
    from documents.workflows import document_insights as workflow

    from django_workflow_engine.registry import registry

    added = registry.get(workflow.id) is None
    if added:
        registry.register(workflow)
    yield workflow
    if added:
        registry.unregister(workflow.id)
