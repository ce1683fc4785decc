"""The run page of a run waiting for a signal: the form built from the signal's model, who may answer, what an
answer records, hostile text escaped, the 'waiting for input' filter."""

from __future__ import annotations

import enum
from typing import Literal

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse
from pydantic import BaseModel, Field

from django_workflow_engine import WorkflowBuilder, define_signal_stage, define_stage, engine
from django_workflow_engine.admin.signals import signal_form
from django_workflow_engine.models import WorkflowAnnotation, WorkflowRun, WorkflowSignal
from django_workflow_engine.testing import registered_workflows

from .conftest import VIEW_PERMS, make_user

pytestmark = pytest.mark.django_db

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


class Tone(enum.Enum):
    CALM = "calm"
    ANGRY = "angry"


class Nested(BaseModel):
    a: int


class Review(BaseModel):
    approved: bool
    summary: str = Field(json_schema_extra={"multiline": True})
    score: int = 3
    weight: float | None = None
    tone: Tone = Tone.CALM
    queue: Literal["billing", "tech"] = "billing"
    extra: Nested | None = None


class Doc(BaseModel):
    text: str


@define_stage(id="draft", name="Draft", input=Doc, output=Doc)
def draft(ctx):
    return Doc(text=ctx.input.text)


review = define_signal_stage(
    id="review",
    name="Review",
    signal="review",
    input=Doc,
    output=Review,
    prepare=lambda ctx: {"draft": ctx.input.text},
)

flow = WorkflowBuilder("signal-admin", "Signal admin", input=Doc, output=Review).pipe(draft).pipe(review).build()


@pytest.fixture(autouse=True)
def _flow():
    with registered_workflows(flow):
        yield


def _waiting(text: str = "hello") -> WorkflowRun:
    run = engine.start("signal-admin", {"text": text})
    engine.run_until_idle()
    return run


def _client(client, *codenames):
    user = make_user(f"u{'-'.join(codenames)[:20]}{WorkflowRun.objects.count()}", *VIEW_PERMS, *codenames)
    client.force_login(user)
    return user


def _url(run, name="change"):
    return reverse(f"admin:django_workflow_engine_workflowrun_{name}", args=[run.pk])


def test_the_form_has_a_field_per_model_field_of_the_right_kind():
    form = signal_form(Review)
    kinds = {name: type(f).__name__ for name, f in form.fields.items()}
    assert kinds == {
        "approved": "BooleanField",
        "summary": "CharField",
        "score": "IntegerField",
        "weight": "FloatField",
        "tone": "TypedChoiceField",
        "queue": "TypedChoiceField",
        "extra": "CharField",
    }
    assert form.fields["summary"].required
    assert not form.fields["weight"].required
    # a field with a default may be left blank (the model's default applies); the default is preselected
    assert [c for c, _ in form.fields["queue"].choices] == ["", "billing", "tech"]
    assert (form.fields["queue"].initial, form.fields["tone"].initial) == ("billing", "calm")
    bound = signal_form(
        Review,
        {
            "signal-approved": "on",
            "signal-summary": "ok",
            "signal-score": "4",
            "signal-tone": "angry",
            "signal-queue": "tech",
            "signal-extra": '{"a": 2}',
        },
    )
    assert bound.is_valid(), bound.errors
    assert Review.model_validate(bound.payload()) == Review(
        approved=True, summary="ok", score=4, tone=Tone.ANGRY, queue="tech", extra=Nested(a=2)
    )


def test_an_operator_answers_from_the_run_page(client):
    run = _waiting(HOSTILE)
    user = _client(client, "signal_workflowrun")
    page = client.get(_url(run)).content.decode()
    assert "Waiting for input" in page, page[page.find("dwe-waits") :][:500]
    assert 'id="dwe-signal-form"' in page
    assert "Waiting for input" in page
    assert HOSTILE not in page
    assert "&lt;script&gt;" in page
    assert 'http-equiv="refresh"' not in page

    response = client.post(
        _url(run, "signal"),
        {
            "signal-approved": "on",
            "signal-summary": HOSTILE,
            "signal-score": "5",
            "signal-tone": "calm",
            "signal-queue": "billing",
        },
    )
    assert response.status_code == 302
    signal = WorkflowSignal.objects.get(run=run)
    assert (signal.actor, signal.payload["summary"]) == (user.username, HOSTILE)
    assert LogEntry.objects.filter(object_id=run.pk, user=user, change_message__contains="review").exists()
    note = WorkflowAnnotation.objects.get(run=run, key="signal.review")
    assert (note.actor_id, note.value["answered_by"]) == (user.username, user.username)
    engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    page = client.get(_url(run)).content.decode()
    assert HOSTILE not in page
    assert 'id="dwe-signal-form"' not in page


def test_validation_errors_are_shown_on_the_form_and_nothing_is_written(client):
    run = _waiting()
    _client(client, "signal_workflowrun")
    response = client.post(
        _url(run, "signal"),
        {
            "signal-summary": "x",
            "signal-score": "many",
            "signal-tone": "calm",
            "signal-queue": "billing",
            "signal-extra": "{not json",
        },
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "Enter a whole number" in page
    assert "Not valid JSON" in page
    assert not WorkflowSignal.objects.exists()
    assert not LogEntry.objects.filter(object_id=run.pk).exists()


def test_a_payload_the_model_refuses_is_shown_on_its_field(client):
    run = _waiting()
    _client(client, "signal_workflowrun")
    response = client.post(
        _url(run, "signal"),
        {
            "signal-summary": "x",
            "signal-score": "1",
            "signal-tone": "calm",
            "signal-queue": "billing",
            "signal-extra": '{"a": "nope"}',
        },
    )
    assert response.status_code == 200
    assert "valid integer" in response.content.decode()
    assert not WorkflowSignal.objects.exists()
    assert not WorkflowAnnotation.objects.filter(run=run).exists()


def test_without_the_permission_there_is_no_form_and_a_post_is_refused(client):
    run = _waiting()
    _client(client)
    page = client.get(_url(run)).content.decode()
    assert "Waiting for input" in page
    assert 'id="dwe-signal-form"' not in page
    response = client.post(_url(run, "signal"), {"signal-approved": "on", "signal-summary": "x"})
    assert response.status_code == 403
    assert not WorkflowSignal.objects.exists()


def test_the_post_needs_a_csrf_token(client):
    from django.test import Client

    run = _waiting()
    strict = Client(enforce_csrf_checks=True)
    _client(strict, "signal_workflowrun")
    response = strict.post(
        _url(run, "signal"), {"signal-summary": "x", "signal-tone": "calm", "signal-queue": "billing"}
    )
    assert response.status_code == 403
    assert not WorkflowSignal.objects.exists()


def test_the_waiting_for_input_filter_and_list_line(client):
    waiting = _waiting()
    done = _waiting()
    engine.signal(done.pk, "review", {"approved": True, "summary": "ok"})
    engine.run_until_idle()
    _client(client)
    page = client.get(reverse("admin:django_workflow_engine_workflowrun_changelist") + "?waiting=input")
    body = page.content.decode()
    assert waiting.short_id in body
    assert done.short_id not in body
    assert "waiting for input: review" in body


def test_the_app_index_counts_runs_waiting_for_input_and_links_to_them(client):
    _waiting()
    _waiting()
    _client(client)
    page = client.get(reverse("admin:app_list", args=["django_workflow_engine"])).content.decode()
    assert "2 runs waiting for input" in page
    assert "workflowrun/?waiting=input" in page


def test_an_async_batch_stage_waiting_for_a_signal_says_so_and_then_that_it_was_woken(client):
    from tests.conformance.test_signals_batch import declared

    with registered_workflows(declared):
        run = engine.start("render-declared", {"name": "Report"})
        engine.run_until_idle()
        _client(client)
        page = client.get(_url(run)).content.decode()
        assert "or until signal &#x27;rendered&#x27; wakes it" in page
        engine.signal(run.pk, "rendered", {"url": "https://cdn/r"})
        page = client.get(_url(run)).content.decode()
        assert "Stage render received its signal: queued for a worker to poll it now." in page
        engine.run_until_idle()
        run.refresh_from_db()
        assert run.status == "COMPLETED"


ATTR = '"><img src=x onerror=alert(2)>'


def test_hostile_text_in_signals_is_escaped_on_every_admin_page(client):
    """Input and prepared context (shown to the reviewer), the payload and the actor of engine.signal (free text
    from a webhook): escaped on the run page before and after the answer, its history and the lists and pages of
    its stages, jobs and events."""
    from django.contrib.auth.models import User

    waiting = _waiting(HOSTILE + ATTR)
    answered = _waiting(ATTR)
    engine.signal(
        answered.pk,
        "review",
        {"approved": True, "summary": HOSTILE + ATTR, "queue": "tech"},
        actor=f"{HOSTILE}{ATTR}"[:200],
        idempotency_key=ATTR,
    )
    engine.run_until_idle()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "x"))
    app = "admin:django_workflow_engine"
    stage = answered.stages.get(stage_id="review")
    pages = [
        _url(waiting),
        _url(answered),
        reverse(f"{app}_workflowrun_history", args=[answered.pk]),
        reverse(f"{app}_workflowrun_changelist"),
        reverse(f"{app}_workflowrun_changelist") + "?waiting=input",
        reverse(f"{app}_workflowstage_changelist"),
        reverse(f"{app}_workflowstage_change", args=[stage.pk]),
        reverse(f"{app}_workflowjob_changelist"),
        reverse(f"{app}_outboxevent_changelist"),
        reverse("admin:app_list", args=["django_workflow_engine"]),
        reverse("admin:index"),
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert "<script>alert" not in html, url
        assert "<img src=x" not in html, url
    assert "&lt;script&gt;" in client.get(_url(waiting)).content.decode()  # the prepared context, shown escaped
    assert "&lt;script&gt;" in client.get(_url(answered)).content.decode()  # the payload and the actor
