"""A workflow registry over a dict or a list."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class DictRegistry:
    """A registry over a dict or list of workflows."""

    def __init__(self, workflows: Iterable[Any] = ()) -> None:  # a Mapping of id -> workflow, or workflows
        self._workflows: dict[str, Any]
        if isinstance(workflows, Mapping):
            self._workflows = dict(workflows)
        else:
            self._workflows = {workflow.id: workflow for workflow in workflows}

    def get(self, workflow_id: str) -> Any:
        return self._workflows.get(workflow_id)

    def ids(self) -> list[str]:
        return sorted(self._workflows)

    def add(self, workflow: Any) -> None:
        self._workflows[workflow.id] = workflow
