"""The admin says why a run waits: a concurrency slot (key, limit), a suspended poll, a retry backoff."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from django_workflow_engine import engine
from django_workflow_engine.models import WorkflowJob, WorkflowRun, WorkflowStage

pytestmark = pytest.mark.django_db

APP = "django_workflow_engine"


def test_run_list_and_run_page_show_a_concurrency_wait_and_filter_it(admin_client_):
    holder = engine.start("per-customer", {"customer": "acme", "n": 1})
    waiting = engine.start("per-customer", {"customer": "acme", "n": 2})
    free = engine.start("diamond", {"value": 1})

    page = admin_client_.get(reverse(f"admin:{APP}_workflowrun_changelist")).content.decode()
    assert "waiting for a concurrency slot: key &#x27;acme&#x27;, limit 1" in page

    filtered = admin_client_.get(reverse(f"admin:{APP}_workflowrun_changelist") + "?waiting=slot").content.decode()
    assert waiting.short_id in filtered
    assert holder.short_id not in filtered
    assert free.short_id not in filtered

    detail = admin_client_.get(reverse(f"admin:{APP}_workflowrun_change", args=[waiting.id])).content.decode()
    assert (
        "Waiting for a concurrency slot: key &#x27;acme&#x27;, limit 1 (1 running); it starts when one frees." in detail
    )

    engine.cancel(holder.id)
    detail = admin_client_.get(reverse(f"admin:{APP}_workflowrun_change", args=[waiting.id])).content.decode()
    assert "concurrency slot" not in detail
    assert WorkflowRun.objects.get(pk=waiting.id).status == "RUNNING"


def test_run_list_shows_retry_backoff_and_suspended_poll_and_the_any_filter(admin_client_):
    retrying = engine.start("diamond", {"value": 1})
    later = timezone.now() + timedelta(minutes=5)
    WorkflowJob.objects.filter(run_id=retrying.id).update(attempt=1, available_at=later)
    polling = engine.start("diamond", {"value": 2})
    WorkflowStage.objects.filter(run_id=polling.id).update(status="SUSPENDED", next_poll_at=later)
    idle = engine.start("diamond", {"value": 3})

    url = reverse(f"admin:{APP}_workflowrun_changelist")
    page = admin_client_.get(url).content.decode()
    assert "retry backoff until" in page
    assert "suspended, next poll at" in page
    filtered = admin_client_.get(url + "?waiting=any").content.decode()
    assert retrying.short_id in filtered
    assert polling.short_id in filtered
    assert idle.short_id not in filtered


def test_a_stage_deferred_by_an_ai_rate_limit_shows_its_reason_and_has_a_filter(admin_client_, settings):
    settings.WORKFLOW_ENGINE = {
        **settings.WORKFLOW_ENGINE,
        "AI_RATE_LIMITS": {"gpt-4o-mini": {"rpm": 1}},
        "AI_RATE_LIMIT_WAIT_SECONDS": 0,
    }
    limited = engine.start("ai-burst", {"n": 2})
    engine.run_until_idle()  # the second call is over the limit: the stage is deferred
    job = WorkflowJob.objects.get(run_id=limited.id)
    assert job.wait_reason.startswith("rate limit gpt-4o-mini until ")
    retrying = engine.start("diamond", {"value": 1})
    WorkflowJob.objects.filter(run_id=retrying.id).update(attempt=1, available_at=timezone.now() + timedelta(minutes=5))

    url = reverse(f"admin:{APP}_workflowrun_changelist")
    page = admin_client_.get(url).content.decode()
    assert job.wait_reason in page
    rate = admin_client_.get(url + "?waiting=rate").content.decode()
    assert limited.short_id in rate
    assert retrying.short_id not in rate
    assert limited.short_id in admin_client_.get(url + "?waiting=any").content.decode()

    detail = admin_client_.get(reverse(f"admin:{APP}_workflowrun_change", args=[limited.id])).content.decode()
    assert f"Stage calls is deferred: {job.wait_reason} (the same attempt; no retry is used)." in detail
