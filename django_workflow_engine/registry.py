"""The workflow registry: autodiscovered ``workflows.py`` modules plus ``WORKFLOW_ENGINE["WORKFLOWS"]``."""

from __future__ import annotations

import threading
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import autodiscover_modules, import_string

from .core.workflow import Workflow


class WorkflowRegistry:
    """Maps workflow ids to :class:`Workflow` objects.

    Every module-level ``Workflow`` in an installed app's ``workflows.py`` is registered, plus each dotted
    path in ``WORKFLOW_ENGINE["WORKFLOWS"]``. Registering two different workflows under one id is an error.
    """

    def __init__(self) -> None:
        self._workflows: dict[str, Workflow] = {}
        self._lock = threading.RLock()
        self._discovered = False

    def register(self, workflow: Workflow) -> Workflow:
        if not isinstance(workflow, Workflow):
            raise ImproperlyConfigured(f"Cannot register {workflow!r}: it is not a Workflow (call .build()).")
        with self._lock:
            existing = self._workflows.get(workflow.id)
            if existing is not None and existing is not workflow:
                raise ImproperlyConfigured(
                    f"Two workflows are registered with the id {workflow.id!r}. Workflow ids must be unique."
                )
            self._workflows[workflow.id] = workflow
        return workflow

    def unregister(self, workflow_id: str) -> None:
        with self._lock:
            self._workflows.pop(workflow_id, None)

    def get(self, workflow_id: str) -> Workflow | None:
        self.autodiscover()
        return self._workflows.get(workflow_id)

    def ids(self) -> list[str]:
        self.autodiscover()
        return sorted(self._workflows)

    def all(self) -> list[Workflow]:
        self.autodiscover()
        return [self._workflows[i] for i in sorted(self._workflows)]

    def autodiscover(self) -> None:
        if self._discovered:
            return
        with self._lock:
            if self._discovered:
                return
            self._discovered = True
            from .conf import settings

            autodiscover_modules("workflows", register_to=None)
            self._register_module_workflows()
            for path in settings.WORKFLOWS:
                try:
                    obj: Any = import_string(path)
                except ImportError as exc:
                    raise ImproperlyConfigured(
                        f"WORKFLOW_ENGINE['WORKFLOWS'] entry {path!r} cannot be imported: {exc}"
                    ) from exc
                self.register(obj)

    def _register_module_workflows(self) -> None:
        import sys

        from django.apps import apps

        for config in apps.get_app_configs():
            module = sys.modules.get(f"{config.name}.workflows")
            if module is None:
                continue
            for value in vars(module).values():
                if isinstance(value, Workflow):
                    self.register(value)


registry = WorkflowRegistry()
