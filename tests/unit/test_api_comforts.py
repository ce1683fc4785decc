"""``define_stage`` defaults its id and name from the function; the renamed ``CONTINUE_IN_WORKER`` setting
still answers to ``EAGER_EXECUTION``, with a DeprecationWarning."""

from __future__ import annotations

import pytest

from django_workflow_engine import define_stage
from django_workflow_engine.conf import settings as engine_settings
from django_workflow_engine.core.errors import WorkflowDefinitionError


def test_define_stage_defaults_id_and_name_from_the_function():
    @define_stage()
    def fetch_pages(ctx):
        return {}

    assert (fetch_pages.id, fetch_pages.name) == ("fetch_pages", "Fetch pages")

    @define_stage(name="Given")
    def keep_id(ctx):
        return {}

    assert (keep_id.id, keep_id.name) == ("keep_id", "Given")
    stage = define_stage(id="given", execute=lambda ctx: {})
    assert (stage.id, stage.name) == ("given", "Given")


def test_define_stage_without_a_usable_function_name_asks_for_an_id():
    with pytest.raises(WorkflowDefinitionError, match=r"id= is needed: it defaults to the function's name"):
        define_stage(execute=lambda ctx: {})
    with pytest.raises(WorkflowDefinitionError, match=r"Invalid stage id ''"):
        define_stage(id="", execute=lambda ctx: {})  # given, so checked as given


def test_continue_in_worker_defaults_on_and_reads_its_new_name(settings):
    assert engine_settings.CONTINUE_IN_WORKER is True
    settings.WORKFLOW_ENGINE = {"CONTINUE_IN_WORKER": False}
    assert engine_settings.CONTINUE_IN_WORKER is False


def test_eager_execution_still_works_and_warns(settings):
    settings.WORKFLOW_ENGINE = {"EAGER_EXECUTION": False}
    with pytest.warns(DeprecationWarning, match=r"'EAGER_EXECUTION'.*use WORKFLOW_ENGINE\['CONTINUE_IN_WORKER'\]"):
        assert engine_settings.CONTINUE_IN_WORKER is False
    with pytest.warns(DeprecationWarning, match="EAGER_EXECUTION"):
        assert engine_settings.EAGER_EXECUTION is False
    settings.WORKFLOW_ENGINE = {"EAGER_EXECUTION": False, "CONTINUE_IN_WORKER": True}
    assert engine_settings.CONTINUE_IN_WORKER is True  # the new name wins, and nothing warns


def test_the_old_setting_name_is_no_unknown_key_for_the_system_checks(settings):
    from django_workflow_engine.checks import check_settings

    settings.WORKFLOW_ENGINE = {"EAGER_EXECUTION": "yes"}
    with pytest.warns(DeprecationWarning, match="EAGER_EXECUTION"):
        errors = check_settings(None)
    assert [e.id for e in errors] == ["django_workflow_engine.E003"]  # checked under its new name
    assert "CONTINUE_IN_WORKER" in errors[0].msg
