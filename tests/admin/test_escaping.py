"""Hostile text from stages, logs, errors, AI calls and workflow input is shown escaped on every page."""

from __future__ import annotations

import pytest
from django.urls import reverse

from django_workflow_engine import engine
from django_workflow_engine.models import AICall, WorkflowArtifact, WorkflowLog, WorkflowRun, WorkflowStage

from .factories import seed_runs

pytestmark = pytest.mark.django_db

APP = "django_workflow_engine"
XSS = "<script>alert(1)</script>"
ATTR = '"><img src=x onerror=alert(2)>'


def url(name: str, *args) -> str:
    return reverse(f"admin:{APP}_{name}", args=args)


@pytest.fixture
def hostile_run():
    run = seed_runs(1, status="FAILED", ai_calls=1, logs=1)[0]
    WorkflowRun.objects.filter(pk=run.pk).update(
        input={"text": XSS, "attr": ATTR},
        output={"error": {"message": XSS}},
        config={XSS: {"k": ATTR}},
        metadata={"note": XSS},
        workflow_name=XSS,
    )
    stage = WorkflowStage.objects.get(run=run, stage_id="a")
    WorkflowStage.objects.filter(pk=stage.pk).update(
        stage_name=XSS, error_message=f"RuntimeError: {XSS}", output_data={"value": {"html": XSS, "a": ATTR}}
    )
    WorkflowLog.objects.filter(run=run).update(message=XSS + ATTR, metadata={"x": XSS})
    AICall.objects.filter(run=run).update(model_id=XSS, prompt=XSS, response=ATTR, topic=XSS)
    WorkflowArtifact.objects.create(run=run, stage=stage, key=XSS, data={"x": XSS}, metadata={"y": ATTR})
    return run


def assert_escaped(html: str) -> None:
    assert XSS not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_run_page_escapes_everything(admin_client_, hostile_run):
    html = admin_client_.get(url("workflowrun_change", hostile_run.pk)).content.decode()
    assert_escaped(html)
    assert html.count("&lt;script&gt;") >= 6  # input, output, config, stage name, error, output, log, model ...


def test_run_page_timeline_escapes_stage_names(admin_client_, hostile_run):
    # The stage is not in the registered plan under this name, but the record's name is drawn.
    WorkflowStage.objects.filter(run=hostile_run, stage_id="b").update(stage_id=XSS)
    html = admin_client_.get(url("workflowrun_change", hostile_run.pk)).content.decode()
    assert_escaped(html)


def test_changelists_escape(admin_client_, hostile_run):
    for model in ("workflowrun", "workflowstage", "workflowlog", "workflowartifact", "aicall"):
        html = admin_client_.get(url(f"{model}_changelist")).content.decode()
        assert XSS not in html, model
        assert "<img src=x" not in html, model


@pytest.mark.parametrize("model", ["workflowstage", "workflowlog", "workflowartifact", "aicall"])
def test_detail_pages_escape(admin_client_, hostile_run, model):
    obj = {
        "workflowstage": WorkflowStage.objects.get(run=hostile_run, stage_id="a"),
        "workflowlog": WorkflowLog.objects.filter(run=hostile_run).first(),
        "workflowartifact": WorkflowArtifact.objects.get(run=hostile_run),
        "aicall": AICall.objects.filter(run=hostile_run).first(),
    }[model]
    html = admin_client_.get(url(f"{model}_change", obj.pk)).content.decode()
    assert_escaped(html)


def test_action_pages_and_cost_report_escape(admin_client_, hostile_run):
    html = admin_client_.get(url("workflowrun_rerun", hostile_run.pk)).content.decode()
    assert XSS not in html
    html = admin_client_.get(url("aicall_costs")).content.decode()
    assert_escaped(html)
    running = engine.start("diamond", {"value": 1})
    WorkflowRun.objects.filter(pk=running.pk).update(workflow_id=XSS)
    html = admin_client_.get(url("workflowrun_cancel", running.pk)).content.decode()
    assert_escaped(html)


def test_search_term_is_escaped(admin_client_):
    html = admin_client_.get(url("workflowrun_changelist"), {"q": XSS}).content.decode()
    assert XSS not in html


def test_real_stage_failure_message_is_escaped(admin_client_):
    from tests import flows

    flows.FAIL["b"] = XSS
    run = engine.start("diamond", {"value": 1})
    engine.run_until_idle()
    html = admin_client_.get(url("workflowrun_change", run.pk)).content.decode()
    assert "RuntimeError: &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert XSS not in html
