"""The pipeline on the kernel's in-memory adapters: no database, no Django models, fast."""

from __future__ import annotations

import pytest

from django_workflow_engine.errors import InvalidInput
from documents.samples import SAMPLES
from documents.workflows import STOPWORDS, document_insights


@pytest.fixture
def h(memory_harness):
    return memory_harness([document_insights])


def test_stages_run_in_plan_order(h):
    assert [[s.id for s in group] for group in document_insights.execution_plan()] == [
        ["ingest"],
        ["keywords", "stats"],
        ["report"],
    ]


def test_report(h):
    run_id = h.start("document-insights", {"title": "Pets", "text": "Cats chase mice.  Cats sleep!\nDogs chase cats?"})
    h.drain()

    run = h.run(run_id)
    assert run.status == "COMPLETED"
    assert run.output["keywords"] == ["cats", "chase", "dogs", "mice", "sleep"]
    assert run.output["sentences"] == 3
    assert run.output["word_count"] == 8


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s["title"])
def test_samples_complete_without_stopword_keywords(h, sample):
    run_id = h.start("document-insights", sample, config={"keywords": {"top_n": 3}})
    h.drain()

    run = h.run(run_id)
    assert run.status == "COMPLETED", run.output
    assert len(run.output["keywords"]) == 3
    assert not STOPWORDS & set(run.output["keywords"])


def test_empty_text_is_invalid(h):
    with pytest.raises(InvalidInput, match="text"):
        h.start("document-insights", {"text": ""})
    assert h.store.runs == {}
