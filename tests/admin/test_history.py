"""A rerun keeps the failure it fixes: the run page shows the current attempt and opens earlier ones; a failed
run says where and why it failed; waits say until when; jobs have their own list."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from django_workflow_engine import engine
from django_workflow_engine.models import Status, WorkflowJob, WorkflowLog, WorkflowStage
from tests import flows

pytestmark = pytest.mark.django_db

APP = "django_workflow_engine"


def url(name: str, *args) -> str:
    return reverse(f"admin:{APP}_{name}", args=args)


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.fixture
def failed_run():
    flows.FAIL["b"] = "RateLimitError: slow down"
    run = engine.start("diamond", {"value": 1})
    engine.run_until_idle()
    run.refresh_from_db()
    assert run.status == "FAILED"
    flows.FAIL.clear()
    return run


def test_failed_run_page_says_which_stage_failed_on_which_try_and_why(admin_client_, failed_run):
    html = admin_client_.get(url("workflowrun_change", failed_run.pk)).content.decode()
    box = re.search(r'id="dwe-failure">(.*?)</div>', html, re.S).group(1)
    assert "Stage b (Add one) failed on attempt 3 of 3" in text(box)
    assert "RuntimeError" in re.search(r'class="dwe-error-type">(.*?)<', box).group(1)
    assert "RateLimitError: slow down" in box
    # the stored traceback, folded
    assert re.search(r"<details class=\"dwe-traceback\"><summary>Traceback</summary>", box)
    assert "raise RuntimeError(FAIL[stage_id])" in box
    # the stage table shows the tries of the stage's job, not the rerun generation
    row = re.search(r'data-stage="b">(.*?)</tr>', html, re.S).group(1)
    assert "3 of 3" in row


def test_rerun_keeps_the_failed_attempt_and_the_page_opens_it(login, failed_run):
    operator = login("rerunner")
    response = operator.post(url("workflowrun_rerun", failed_run.pk), {"stage": "b", "post": "yes"})
    assert response.status_code == 302
    engine.run_until_idle()
    failed_run.refresh_from_db()
    assert failed_run.status == "COMPLETED"

    html = admin_client_html(operator, failed_run)
    attempts = text(re.search(r'id="dwe-attempts">(.*?)</div>', html, re.S).group(1))
    user = operator.user.username
    assert f"Attempt 1 failed at b: RuntimeError: RateLimitError: slow down · rerun from b by {user}" in attempts
    assert "Attempt 2 (current)" in attempts
    # the current attempt's stages: b completed
    assert "COMPLETED" in re.search(r'data-stage="b">(.*?)</tr>', html, re.S).group(1)
    # the first attempt's ERROR logs are still on the page, attributed to attempt 1
    logs = re.search(r'id="dwe-logs">(.*?)</table>', html, re.S).group(1)
    assert re.search(r"ERROR.*?<code>b</code> <span class=\"quiet dwe-log-attempt\">attempt 1</span>", logs, re.S)
    assert "Stage &#x27;b&#x27; failed: RuntimeError: RateLimitError: slow down" in logs

    # attempt 1, opened from the list, shows the failed record as it was
    earlier = operator.get(url("workflowrun_change", failed_run.pk), {"attempt": 1}).content.decode()
    row = re.search(r'data-stage="b">(.*?)</tr>', earlier, re.S).group(1)
    assert "FAILED" in row
    assert "RateLimitError: slow down" in row
    assert "You are looking at attempt 1" in text(earlier)
    # the failed record's page opens from the stage list's "earlier attempts" filter
    old = WorkflowStage.all_generations.get(run=failed_run, stage_id="b", superseded_at__isnull=False)
    assert old.superseded_by == user
    listing = operator.get(url("workflowstage_changelist"), {"run": failed_run.pk, "generation": "superseded"})
    assert old.pk in listing.content.decode()
    assert operator.get(url("workflowstage_change", old.pk)).status_code == 200
    current = operator.get(url("workflowstage_changelist"), {"run": failed_run.pk}).content.decode()
    assert old.pk not in current
    assert WorkflowLog.objects.filter(stage=old, level="ERROR").count() == 3


def admin_client_html(client, run) -> str:
    response = client.get(url("workflowrun_change", run.pk))
    assert response.status_code == 200
    return response.content.decode()


def test_rerun_confirmation_says_what_will_run_again(login, failed_run):
    html = login("rerunner").get(url("workflowrun_rerun", failed_run.pk)).content.decode()
    choice = re.search(r'value="b"(.*?)</label>', html, re.S).group(1)
    assert "runs again: b, c, d" in text(choice)
    assert "keeps: a" in text(choice)


def test_scheduled_retry_and_suspended_wait_are_shown(admin_client_):
    flows.FAIL["a"] = "flaky"
    run = engine.start("diamond", {"value": 1})
    engine.run_until_idle(max_jobs=1)  # a's first delivery fails; its retry is due at once (base 0 s)
    job = WorkflowJob.objects.get(run=run, stage_id="a")
    due = timezone.now() + timedelta(minutes=5)
    WorkflowJob.objects.filter(pk=job.pk).update(available_at=due)
    html = admin_client_.get(url("workflowrun_change", run.pk)).content.decode()
    clock = timezone.localtime(due).strftime("%H:%M:%S")
    row = re.search(r'data-stage="a">(.*?)</tr>', html, re.S).group(1)
    assert f"retrying at {clock} (attempt 2 of 3)" in row
    assert ">FAILED<" not in row
    assert f"retrying at {clock} (attempt 2 of 3)" in text(re.search(r'id="dwe-waits">(.*?)</div>', html, re.S)[1])

    # a suspended stage: the page says until when, and refreshes every 30 s
    stage = WorkflowStage.objects.get(run=run, stage_id="a")
    poll = timezone.now() + timedelta(minutes=2)
    WorkflowStage.objects.filter(pk=stage.pk).update(status=Status.SUSPENDED, next_poll_at=poll)
    WorkflowJob.objects.filter(pk=job.pk).update(status=Status.SUSPENDED)
    html = admin_client_.get(url("workflowrun_change", run.pk)).content.decode()
    waits = text(re.search(r'id="dwe-waits">(.*?)</div>', html, re.S)[1])
    assert f"Stage a is suspended until its next poll at {timezone.localtime(poll):%H:%M:%S}" in waits
    assert '<meta http-equiv="refresh" content="30">' in html


def test_jobs_list_is_linked_from_the_run_page(admin_client_, failed_run):
    html = admin_client_.get(url("workflowrun_change", failed_run.pk)).content.decode()
    link = url("workflowjob_changelist") + f"?run={failed_run.pk}"
    assert f'href="{link}"' in html
    listing = text(admin_client_.get(link).content.decode())
    assert "3 of 3" in listing  # b's job: three deliveries
    assert "FAILED" in listing
    job = WorkflowJob.objects.filter(run=failed_run).first()
    assert admin_client_.get(url("workflowjob_change", job.pk)).status_code == 200


def test_run_list_error_column_workflow_names_and_status_filters(admin_client_, failed_run):
    html = admin_client_.get(url("workflowrun_changelist")).content.decode()
    link = url("workflowrun_change", failed_run.pk) + "#dwe-failure"
    assert f'<a href="{link}" class="dwe-error-link">RuntimeError: RateLimitError: slow down</a>' in html
    assert 'Diamond <code class="quiet">diamond</code>' in html
    filters = re.search(r'id="changelist-filter"(.*?)</nav>', html, re.S).group(1)
    assert "?status__exact=FAILED" in filters
    assert "SUSPENDED" not in filters
    assert "SKIPPED" not in filters
    only_failed = admin_client_.get(url("workflowrun_changelist"), {"status__exact": "FAILED"}).content.decode()
    assert failed_run.short_id in only_failed


def test_run_list_finds_runs_by_the_business_key_the_workflow_declares(admin_client_):
    from pydantic import BaseModel

    from django_workflow_engine import WorkflowBuilder, define_stage
    from django_workflow_engine.errors import WorkflowDefinitionError
    from django_workflow_engine.registry import registry

    class Ticket(BaseModel):
        ticket_id: str
        priority: int = 1

    @define_stage(id="triage", name="Triage", input=Ticket)
    def triage(ctx):
        return {"ok": True}

    workflow = WorkflowBuilder("tickets", "Support tickets", input=Ticket, label="ticket_id").pipe(triage).build()
    with pytest.raises(WorkflowDefinitionError, match="label='ticket' must name a field of the input model"):
        WorkflowBuilder("bad", "Bad", input=Ticket, label="ticket")
    registry.register(workflow)
    try:
        wanted = engine.start("tickets", {"ticket_id": "T-4711"})
        other = engine.start("tickets", {"ticket_id": "T-4712"})
        html = admin_client_.get(url("workflowrun_changelist"), {"q": "T-4711"}).content.decode()
        assert wanted.short_id in html
        assert other.short_id not in html
        # the list shows each run's business key beside its workflow's name
        listing = admin_client_.get(url("workflowrun_changelist")).content.decode()
        assert '<span class="dwe-label">· T-4712</span>' in listing
        assert 'Support tickets <code class="quiet">tickets</code>' in listing
    finally:
        registry.unregister("tickets")
