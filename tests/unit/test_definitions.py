"""Stage and workflow definitions (no database)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import BaseModel, Field

from django_workflow_engine import StageResult, WorkflowBuilder, define_stage
from django_workflow_engine.core.context import StageStorage, check_blob_key
from django_workflow_engine.errors import InvalidBlobKey, InvalidInput, MissingStageOutput, WorkflowDefinitionError
from django_workflow_engine.kernel.memory import InMemoryBlobStore
from tests import flows


class In(BaseModel):
    text: str


class Cfg(BaseModel):
    model: str = "gpt-4o-mini"
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int | None = None
    tags: list[str] = Field(default_factory=list)


def _stage(id, **kw):
    return define_stage(id=id, name=str(id).title() or "X", execute=lambda ctx: {}, **kw)


def test_define_stage_as_decorator_and_call():
    @define_stage(id="x", name="X", input=In, config=Cfg)
    def x(ctx):
        return {"n": 1}

    y = define_stage(id="y", name="Y", execute=lambda ctx: {"n": 2})
    assert (x.id, x.name, x.input, x.config, x.mode) == ("x", "X", In, Cfg, "sync")
    assert y.execute(None) == {"n": 2}


@pytest.mark.parametrize("bad", ["", "../x", "has space", "a" * 101, 3])  # None: defaults to the function name
def test_bad_stage_ids_are_rejected(bad):
    with pytest.raises(WorkflowDefinitionError, match="Invalid stage id"):
        _stage(bad)


def test_schema_must_be_a_pydantic_model():
    with pytest.raises(WorkflowDefinitionError, match="input= must be a pydantic BaseModel"):
        _stage("x", input=dict)


def test_builder_plan_and_queries():
    wf = flows.diamond
    assert wf.stage_ids() == ["a", "b", "c", "d"]
    assert [[s.id for s in g] for g in wf.execution_plan()] == [["a"], ["b", "c"], ["d"]]
    assert wf.group_of("c") == 2
    assert wf.stage_number("d") == 4
    assert wf.default_config() == {"a": {"factor": 2}, "b": {}, "c": {}, "d": {}}


def test_duplicate_stage_ids_fail_the_build():
    with pytest.raises(WorkflowDefinitionError, match="duplicate stage id 'a'"):
        WorkflowBuilder("w", "W").pipe(_stage("a")).pipe(_stage("a"))
    with pytest.raises(WorkflowDefinitionError, match="duplicate stage id 'a'"):
        WorkflowBuilder("w", "W").parallel([_stage("a"), _stage("a")])


def test_unknown_dependency_fails_with_current_stages():
    with pytest.raises(WorkflowDefinitionError, match=r'"b" has missing dependencies: zzz.*Current stages: a'):
        WorkflowBuilder("w", "W").pipe(_stage("a")).pipe(_stage("b", dependencies=["zzz"]))


def test_dependency_in_same_parallel_group_is_rejected():
    with pytest.raises(WorkflowDefinitionError, match="same parallel group"):
        WorkflowBuilder("w", "W").parallel([_stage("a"), _stage("b", dependencies=["a"])])


def test_dependency_added_later_is_rejected():
    with pytest.raises(WorkflowDefinitionError, match="missing dependencies: c"):
        WorkflowBuilder("w", "W").pipe(_stage("b", dependencies=["c"])).pipe(_stage("c"))


def test_empty_workflow_cannot_be_built():
    with pytest.raises(WorkflowDefinitionError, match="has no stages"):
        WorkflowBuilder("w", "W").build()


def test_default_config_and_validate_config_collects_all_errors():
    wf = WorkflowBuilder("w", "W").pipe(_stage("one", config=Cfg)).pipe(_stage("two", config=Cfg)).build()
    assert wf.default_config()["one"] == {"model": "gpt-4o-mini", "temperature": 0.7, "max_tokens": None, "tags": []}
    result = wf.validate_config({"one": {"temperature": 5}, "two": {"max_tokens": "many"}})
    assert not result.valid
    assert set(result.errors) == {"one", "two"}
    assert "temperature" in result.errors["one"]
    assert "max_tokens" in result.errors["two"]
    assert wf.validate_config({}).valid


def test_workflow_input_validation_names_fields():
    wf = WorkflowBuilder("w", "W", input=In).pipe(_stage("one", input=In)).build()
    with pytest.raises(InvalidInput, match="Invalid input for workflow 'w': field 'text'"):
        wf.parse_input({})
    with pytest.raises(InvalidInput, match="NUL"):
        wf.parse_input({"text": "a\x00b"})


def test_untyped_input_rejects_nan_and_surrogates():
    wf = WorkflowBuilder("w", "W").pipe(_stage("one")).build()
    with pytest.raises(InvalidInput, match=r"x\[1\]: is nan"):
        wf.parse_input({"x": [1, float("nan")]})
    with pytest.raises(InvalidInput, match="surrogate"):
        wf.parse_input({"s": "\ud800"})


def test_require_names_missing_and_available_stages():
    from django_workflow_engine.core.context import StageContext

    ctx = StageContext(
        input=None,
        workflow_context={"a": 1, "b": 0},
        stage_number=3,
        run_id="r",
        workflow_id="w",
        stage_id="c",
        stage_name="C",
        stage_record_id="s",
        attempt=0,
        config=None,
        storage=StageStorage(InMemoryBlobStore(), "w", "r", "c"),
        log_sink=lambda *a: None,
    )
    assert ctx.require("b") == 0
    assert ctx.optional("zzz", "dflt") == "dflt"
    with pytest.raises(MissingStageOutput, match=r"'zzz'. Available stages: a, b"):
        ctx.require("zzz")


def test_storage_keys_and_hostile_keys():
    blobs = InMemoryBlobStore()
    storage = StageStorage(blobs, "wf", "run1", "stage1")
    assert storage.stage_key() == "runs/wf/run1/stage1/output.json"
    assert storage.stage_key("other", "x.json") == "runs/wf/run1/other/x.json"
    storage.save("notes/a.json", {"a": 1})
    assert storage.exists("notes/a.json")
    assert storage.load("notes/a.json") == {"a": 1}
    storage.delete("notes/a.json")
    assert not storage.exists("notes/a.json")
    for bad in ["../etc/passwd", "/abs", "a/../../b", "", "a//b", "a\\b"]:
        with pytest.raises(InvalidBlobKey):
            check_blob_key(bad)


def test_stage_result_holds_metrics_and_artifacts():
    result = StageResult(output={"x": 1}, custom_metrics={"items": 3}, artifacts={"raw": [1]})
    assert result.custom_metrics == {"items": 3}


def test_core_and_kernel_do_not_import_django_or_litellm():
    code = (
        "import sys, django_workflow_engine, django_workflow_engine.core, django_workflow_engine.kernel, "
        "django_workflow_engine.kernel.memory, django_workflow_engine.kernel.clock, django_workflow_engine.testing; "
        "import django_workflow_engine.kernel.execution, django_workflow_engine.hosts.drain; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'litellm')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_async_stage_runs_inside_a_running_event_loop():
    import asyncio

    from django_workflow_engine.core.stage import run_callable

    async def stage(ctx):
        await asyncio.sleep(0)
        return {"ctx": ctx}

    async def caller():
        return run_callable(stage, 7)

    assert asyncio.run(caller()) == {"ctx": 7}
