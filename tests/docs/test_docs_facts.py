"""Facts the documentation states that must stay true of the code: settings tables, commands, links, fixtures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from django_workflow_engine.checks import SQLITE_OPTIONS, SQLITE_OPTIONS_SNIPPET
from django_workflow_engine.conf import DEFAULTS
from django_workflow_engine.kernel.kernel import _HANDLERS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
OUR_PAGES = [
    "index.md",
    "concepts.md",
    "stages-and-workflows.md",
    "async-batch.md",
    "operating.md",
    "testing.md",
    "kernel.md",
    "porting.md",
    "settings.md",
    "tasks.md",
    "flow-control.md",
    "child-workflows.md",
    "human-in-the-loop.md",
    "fan-out.md",
]
LINK_RE = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def table_rows(text: str) -> dict[str, str]:
    """``{key: default cell}`` of the Markdown table rows that start with a backticked setting name."""
    rows = {}
    for line in text.splitlines():
        match = re.match(r"\|\s*`([A-Z_]+)`\s*\|\s*([^|]+)\|", line)
        if match:
            rows[match[1]] = match[2].strip()
    return rows


def shown(value: object) -> str:
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value!r}`"


@pytest.mark.parametrize("path", [ROOT / "README.md", DOCS / "settings.md"], ids=lambda p: p.name)
def test_settings_table_lists_every_default(path):
    rows = table_rows(read(path))
    assert set(rows) == set(DEFAULTS), (
        f"{path.name}: missing {set(DEFAULTS) - set(rows)}, extra {set(rows) - set(DEFAULTS)}"
    )
    for key, default in DEFAULTS.items():
        assert rows[key].startswith(shown(default)), (
            f"{path.name}: {key} default is {default!r}, table says {rows[key]}"
        )


def test_quick_start_commands_are_kept():
    text = read(ROOT / "README.md")
    assert "python3 dev.py demo    #" in text
    assert "python3 dev.py test    #" in text
    assert text.index("## Quick start") < text.index("python3 dev.py demo") < text.index("## Example")


def test_every_kernel_command_is_documented():
    text = read(DOCS / "kernel.md")
    for command_type in _HANDLERS:
        assert f"## `{command_type}`" in text, command_type


def test_every_plugin_fixture_is_documented():
    from django_workflow_engine.testing import plugin

    text = read(DOCS / "testing.md")
    fixtures = ["fake_clock", "memory_harness", "workflow_runner", "fake_clock_engine", "fake_clock_runner", "mock_ai"]
    for name in fixtures:
        assert hasattr(plugin, name), name
        assert f"`{name}`" in text, name


@pytest.mark.parametrize("name", ["README.md", *(f"docs/{p}" for p in OUR_PAGES)])
def test_relative_links_resolve(name):
    path = ROOT / name
    for target, _anchor in LINK_RE.findall(read(path)):
        if "://" in target or target.startswith("mailto:"):
            continue
        resolved = (path.parent / target).resolve()
        if resolved.name in ("ai.md", "admin.md") and resolved.parent == DOCS and not resolved.exists():
            continue  # written by the AI helper and admin work; linked ahead of time
        assert resolved.exists(), f"{name}: broken link {target}"


def test_public_names_are_documented():
    import django_workflow_engine

    text = "\n".join(read(DOCS / p) for p in OUR_PAGES) + read(ROOT / "README.md")
    undocumented = [n for n in django_workflow_engine.__all__ if n not in text]
    assert undocumented == []


def test_the_pytest_plugin_imports_without_django_set_up():
    import subprocess
    import sys

    code = (
        "import sys, django_workflow_engine.testing.plugin, django_workflow_engine.testing; "
        "assert 'django.db' not in sys.modules, 'django.db was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={"PATH": ""}, timeout=60)


def test_the_sqlite_snippet_is_the_same_in_the_check_the_docs_and_the_example():
    assert SQLITE_OPTIONS_SNIPPET.startswith('DATABASES["default"]["OPTIONS"] = {')
    for path in (
        ROOT / "README.md",
        DOCS / "operating.md",
        ROOT / "example_project" / "example_project" / "settings.py",
    ):
        text = read(path)
        for key, value in SQLITE_OPTIONS.items():
            assert f'"{key}": {json.dumps(value)},' in text, f"{path.name}: {key}"
