"""Every ```python block in README.md and docs/*.md is executed, so the documentation cannot rot.

Blocks of one file run in order in one shared namespace, inside a ``django_db(transaction=True)`` test, so
``engine.start`` and ``engine.run_until_idle()`` work against the test database exactly as in a project. Like an
app's ``workflows.py``, every module-level ``Workflow`` a block defines is registered (and unregistered when the
file's test ends); workflows are also looked up in the namespace when the registry misses, so one block may
define a workflow and start it. A block preceded by ``<!-- no-run -->`` (a settings excerpt, say) is only compiled. Other
fences (bash, ini, Procfile, text) are not Python and are left alone.
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
NO_RUN = "<!-- no-run -->"
FENCE_RE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the first line of code
    lang: str
    code: str
    run: bool


def extract_blocks(path: Path, text: str | None = None) -> list[Block]:
    """The fenced code blocks of a Markdown file, in order."""
    lines = (path.read_text(encoding="utf-8") if text is None else text).splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE_RE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, indent, lang = match["fence"], len(match["indent"]), match["lang"].lower()
        previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        blocks.append(Block(path, i + 2, lang, "\n".join(body) + "\n", previous != NO_RUN))
        i = j + 1
    return blocks


def python_blocks(path: Path) -> list[Block]:
    return [b for b in extract_blocks(path) if b.lang in ("python", "py")]


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


class AutoRegister:
    """Registers the ``Workflow`` objects found in a namespace, as the registry does for ``workflows.py``."""

    def __init__(self) -> None:
        self.added: dict[str, Any] = {}

    def scan(self, namespace: dict[str, Any]) -> None:
        from django_workflow_engine import Workflow
        from django_workflow_engine.registry import registry

        for value in list(namespace.values()):
            if not isinstance(value, Workflow):
                continue
            if self.added.get(value.id) not in (None, value):
                registry.unregister(value.id)  # a later block redefined a workflow of this file
                del self.added[value.id]
            if value.id not in registry.ids():
                self.added[value.id] = value
            registry.register(value)

    def close(self) -> None:
        from django_workflow_engine.registry import registry

        for workflow_id in self.added:
            registry.unregister(workflow_id)
        self.added.clear()


@pytest.fixture
def auto_register() -> Iterator[AutoRegister]:
    helper = AutoRegister()
    yield helper
    helper.close()


def compile_block(block: Block) -> Any:
    # Padding keeps tracebacks pointing at the line of the Markdown file.
    source = "\n" * (block.line - 1) + block.code
    # dont_inherit: this test module's ``from __future__ import annotations`` must not leak into the docs' code.
    return compile(source, str(block.path.relative_to(ROOT)), "exec", dont_inherit=True)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(path: Path, auto_register: AutoRegister, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks(path)
    # A real module, as a workflows.py would be, so pydantic can resolve the annotations of models defined here.
    module = types.ModuleType("docs_" + re.sub(r"\W", "_", path.stem))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    # Registration happens on lookup as well as after each block, so a block may define a workflow and start it.
    from django_workflow_engine.registry import registry

    lookup = registry.get

    def get(workflow_id: str) -> Any:
        if lookup(workflow_id) is None:
            auto_register.scan(namespace)
        return lookup(workflow_id)

    monkeypatch.setattr(registry, "get", get)
    for block in blocks:
        code = compile_block(block)
        if not block.run:
            continue
        try:
            exec(code, namespace)  # noqa: S102  (executing our own documentation is the point)
        except Exception as exc:
            raise AssertionError(
                f"{path.relative_to(ROOT)}:{block.line}: the code block failed: {type(exc).__name__}: {exc}"
            ) from exc
        auto_register.scan(namespace)


# -- the extractor itself -----------------------------------------------------------------------------------------


def test_extractor_finds_python_blocks_and_honours_no_run():
    text = "\n".join(
        [
            "# Title",
            "```python",
            "x = 1",
            "```",
            "",
            "<!-- no-run -->",
            "",
            "```python",
            "import nowhere",
            "```",
            "```bash",
            "echo hi",
            "```",
            "- item",
            "",
            "  ```python",
            "  y = 2",
            "  ```",
        ]
    )
    blocks = extract_blocks(Path("x.md"), text)
    assert [(b.lang, b.run, b.line, b.code) for b in blocks] == [
        ("python", True, 3, "x = 1\n"),
        ("python", False, 9, "import nowhere\n"),
        ("bash", True, 12, "echo hi\n"),
        ("python", True, 17, "y = 2\n"),
    ]


def test_no_run_is_used_sparingly():
    blocks = [b for path in doc_files() for b in python_blocks(path)]
    skipped = [f"{b.path.name}:{b.line}" for b in blocks if not b.run]
    assert len(skipped) * 5 <= len(blocks), f"too many <!-- no-run --> blocks: {skipped}"
