"""Dead letters: an event whose plugin keeps raising is dead-lettered with its error; the admin lists it and
replays it, and so does ``manage.py deadletters``."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from django_workflow_engine import engine
from django_workflow_engine.kernel import FlushOutbox
from django_workflow_engine.kernel.plugins import define_plugin
from django_workflow_engine.models import OutboxEvent
from tests import flows

pytestmark = pytest.mark.django_db

APP = "django_workflow_engine"
BROKEN = {"on": True}
DELIVERED: list[str] = []


def _handle(event: dict) -> None:
    if BROKEN["on"]:
        raise ConnectionError("webhook at hooks.example.com refused the connection")
    DELIVERED.append(event["type"] if "type" in event else str(event))


PLUGIN = define_plugin(id="webhook", on=["workflow:completed"], handle=_handle)


@pytest.fixture
def dead(settings):
    flows.reset()
    BROKEN["on"] = True
    DELIVERED.clear()
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, "EVENT_PLUGINS": [PLUGIN]}
    run = engine.start("diamond", {"value": 1})
    engine.run_until_idle(flush_events=False)
    for _ in range(3):
        engine.kernel.dispatch(FlushOutbox(max_events=1000))
    event = OutboxEvent.objects.get(run_id=run.id, dlq_at__isnull=False)
    yield event
    flows.reset()


def test_a_dead_letter_keeps_its_error_and_is_replayed_from_the_admin(dead, admin_client_):
    assert dead.last_error == "ConnectionError: webhook at hooks.example.com refused the connection"
    assert dead.retry_count == 3
    url = reverse(f"admin:{APP}_outboxevent_changelist")
    page = admin_client_.get(url + "?state=dead").content.decode()
    assert "dead letter" in page
    assert "ConnectionError: webhook at hooks.example.com refused the connection" in page

    BROKEN["on"] = False
    response = admin_client_.post(url, {"action": "replay_selected", "_selected_action": [str(dead.pk)]}, follow=True)
    assert "1 event(s) will be delivered again at the next outbox flush." in response.content.decode()
    dead.refresh_from_db()
    assert (dead.dlq_at, dead.retry_count) == (None, 0)
    engine.kernel.dispatch(FlushOutbox(max_events=1000))
    dead.refresh_from_db()
    assert dead.published_at is not None
    assert len(DELIVERED) == 1


def test_a_viewer_cannot_replay(dead, login):
    viewer = login("viewer")
    url = reverse(f"admin:{APP}_outboxevent_changelist")
    viewer.post(url, {"action": "replay_selected", "_selected_action": [str(dead.pk)]})
    dead.refresh_from_db()
    assert dead.dlq_at is not None


def test_the_cli_lists_and_replays_dead_letters(dead):
    out = StringIO()
    call_command("deadletters", "list", "--json", stdout=out)
    rows = json.loads(out.getvalue())
    assert [(r["id"], r["run_id"], r["error"]) for r in rows] == [
        (dead.id, dead.run_id, "ConnectionError: webhook at hooks.example.com refused the connection")
    ]
    out = StringIO()
    call_command("deadletters", "list", stdout=out)
    assert f"{dead.id}  {dead.run_id}" in out.getvalue()

    with pytest.raises(CommandError, match="give event ids or --all"):
        call_command("deadletters", "replay")
    out = StringIO()
    call_command("deadletters", "replay", str(dead.id + 999), stdout=out)
    assert out.getvalue().startswith("0 event(s)")
    out = StringIO()
    call_command("deadletters", "replay", "--all", stdout=out)
    assert out.getvalue().startswith("1 event(s)")
    dead.refresh_from_db()
    assert dead.dlq_at is None
