"""Unknown keys in a stage's config slice are refused unless the config model opts into extra keys."""

from __future__ import annotations

import pytest
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from django_workflow_engine import WorkflowBuilder, define_stage
from django_workflow_engine.core.stage import unknown_config_keys
from django_workflow_engine.errors import InvalidConfig


class Plain(BaseModel):
    temperature: float = 0.5
    max_tokens: int = Field(100, alias="maxTokens")
    model: str = Field("gpt", validation_alias=AliasChoices("model", "model_name"))


class Allow(Plain):
    model_config = ConfigDict(extra="allow")


class Ignore(Plain):
    model_config = ConfigDict(extra="ignore")


def test_unknown_keys_are_named_and_aliases_count_as_known():
    raw = {"temprature": 1, "maxTokens": 5, "model_name": "x", "zeta": 0}
    assert unknown_config_keys(Plain, raw) == ["temprature", "zeta"]


@pytest.mark.parametrize("model", [Allow, Ignore])
def test_models_that_say_what_to_do_with_extra_keys_are_left_to_pydantic(model):
    assert unknown_config_keys(model, {"anything": 1}) == []


def _flow(config_model):
    stage = define_stage(id="gen", name="Gen", config=config_model, execute=lambda ctx: {})
    return WorkflowBuilder("f", "F").pipe(stage).build()


def test_resolve_config_refuses_a_typo_naming_stage_and_key():
    with pytest.raises(InvalidConfig) as info:
        _flow(Plain).resolve_config({"gen": {"temprature": 0.9}})
    assert info.value.problems == {
        "gen": "unknown config key(s) 'temprature'; known keys: max_tokens, model, temperature"
    }


def test_extra_allow_keeps_and_extra_ignore_drops_extra_keys():
    assert _flow(Allow).resolve_config({"gen": {"style": "terse"}})["gen"]["style"] == "terse"
    assert "style" not in _flow(Ignore).resolve_config({"gen": {"style": "terse"}})["gen"]
