"""The example workflow, driven through the public facade on the test database."""

from __future__ import annotations

import pytest

from django_workflow_engine import engine
from django_workflow_engine.errors import InvalidConfig, InvalidInput
from django_workflow_engine.models import WorkflowRun
from documents.samples import SAMPLES

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("document_insights")]

TEXT = "Cats chase mice. Cats sleep a lot! Dogs chase cats and dogs bark?"


def test_run_completes_with_a_report():
    run = engine.start("document-insights", {"title": "Pets", "text": TEXT}, config={"keywords": {"top_n": 3}})

    engine.run_until_idle()

    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert run.output == {
        "title": "Pets",
        "word_count": 13,
        "sentences": 3,
        "avg_word_length": 3.85,
        "keywords": ["cats", "chase", "dogs"],
        "summary": "'Pets': 13 words in 3 sentence(s), mostly about cats, chase, dogs.",
    }
    stages = {s.stage_id: s.status for s in run.stages.all()}
    assert stages == {"ingest": "COMPLETED", "keywords": "COMPLETED", "stats": "COMPLETED", "report": "COMPLETED"}


def test_default_config_keeps_five_keywords():
    run = engine.start("document-insights", SAMPLES[0])

    engine.run_until_idle()

    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert len(run.output["keywords"]) == 5


def test_every_stage_is_reported_while_draining():
    run = engine.start("document-insights", {"text": TEXT})
    seen = []

    engine.run_until_idle(on_stage=lambda event: seen.append((str(event.run_id), event.stage_id, event.outcome)))

    assert sorted(seen) == sorted(
        (str(run.id), stage, "completed") for stage in ("ingest", "keywords", "stats", "report")
    )


def test_invalid_input_is_refused_and_writes_nothing():
    with pytest.raises(InvalidInput, match="text"):
        engine.start("document-insights", {"title": "No body"})

    assert not WorkflowRun.objects.exists()


def test_invalid_config_is_refused_and_writes_nothing():
    with pytest.raises(InvalidConfig, match="top_n"):
        engine.start("document-insights", {"text": TEXT}, config={"keywords": {"top_n": 0}})

    assert not WorkflowRun.objects.exists()
