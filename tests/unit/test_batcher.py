"""How many due jobs a worker takes at once (``hosts.jobs.Batcher``, ``WORKFLOW_ENGINE["WORKER_BATCH"]``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from django_workflow_engine.hosts.jobs import BATCH_STAGE_MS, Batcher
from django_workflow_engine.kernel.execution import JobOutcome
from django_workflow_engine.kernel.memory import InMemoryPersistence


def _outcome(ms: int) -> JobOutcome:
    return JobOutcome("job", "run", "stage", 1, "completed", ms)


def _kernel(persistence=None):
    return SimpleNamespace(deps=SimpleNamespace(persistence=persistence or InMemoryPersistence()))


def test_the_batch_doubles_while_stages_are_short_and_drops_to_one_after_a_slow_one(settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, "WORKER_BATCH": 8}
    batcher = Batcher(_kernel())
    sizes = [batcher.size]
    for _ in range(4):
        batcher.observe([_outcome(1), _outcome(2)])
        sizes.append(batcher.size)
    batcher.observe([_outcome(1), _outcome(BATCH_STAGE_MS + 1)])
    sizes.append(batcher.size)
    batcher.observe([])  # nothing ran: start small again
    sizes.append(batcher.size)

    assert sizes == [1, 2, 4, 8, 8, 1, 1]


def test_one_means_one_job_at_a_time(settings):
    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, "WORKER_BATCH": 1}
    batcher = Batcher(_kernel())
    batcher.observe([_outcome(0)])
    assert batcher.size == 1


@pytest.mark.django_db
def test_the_default_batches_on_postgresql_only(settings):
    from django.db import connection

    from django_workflow_engine.adapters.persistence import OrmPersistence

    settings.WORKFLOW_ENGINE = {**settings.WORKFLOW_ENGINE, "WORKER_BATCH": None}
    assert Batcher(_kernel(OrmPersistence())).limit == (8 if connection.vendor == "postgresql" else 1)
    assert Batcher(_kernel()).limit == 1  # the in-memory adapters


@pytest.mark.parametrize("value", [0, -2, 2.5, True, "8"])
def test_a_worker_batch_that_is_no_whole_number_of_jobs_fails_the_system_check(settings, value):
    from django_workflow_engine.checks import check_settings

    settings.WORKFLOW_ENGINE = {"WORKER_BATCH": value}
    errors = check_settings(None)
    assert [e.id for e in errors] == ["django_workflow_engine.E003"]
    assert f"WORKFLOW_ENGINE['WORKER_BATCH'] is {value!r}" in errors[0].msg


@pytest.mark.parametrize("value", [None, 1, 16])
def test_a_worker_batch_of_none_or_a_whole_number_passes(settings, value):
    from django_workflow_engine.checks import check_settings

    settings.WORKFLOW_ENGINE = {"WORKER_BATCH": value}
    assert check_settings(None) == []
