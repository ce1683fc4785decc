"""The Prometheus view, scraped through Django's test client and parsed with prometheus_client's parser."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import path
from django.utils import timezone

from django_workflow_engine import engine
from django_workflow_engine.models import AICall, WorkflowJob, WorkflowStage
from django_workflow_engine.ops.metrics import metrics_view
from tests import flows
from tests.admin.factories import seed_runs

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls(__name__)]

urlpatterns = [path("metrics/", metrics_view)]


@pytest.fixture(autouse=True)
def _reset_flows():
    flows.reset()
    yield
    flows.reset()


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics/")
    assert response.status_code == 200
    assert response["Content-Type"] == prometheus_client.CONTENT_TYPE_LATEST
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_scrape_reports_runs_stages_queue_and_ai(client):
    seed_runs(3, workflow_id="diamond")  # 4 stages of 1 s each per run
    seed_runs(2, workflow_id="triple", status="FAILED", ai_calls=0)
    done = engine.start("diamond", {"value": 1})
    engine.run_until_idle()
    waiting = engine.start("diamond", {"value": 2})  # RUNNING, its first job due
    WorkflowJob.objects.filter(run=waiting).update(available_at=timezone.now() - timedelta(seconds=40))
    later = engine.start("triple", {"n": 1})
    WorkflowJob.objects.filter(run=later).update(available_at=timezone.now() + timedelta(hours=1))
    WorkflowJob.objects.filter(run=done, stage_id="b").update(attempt=3)
    AICall.objects.create(
        created_at=timezone.now(),
        topic="t",
        call_type="text",
        model_key="gpt-4o-mini",
        model_id="gpt-4o-mini",
        input_tokens=1000,
        output_tokens=10,
        cost=Decimal("0.5"),
        workflow_id="diamond",
    )

    samples = scrape(client)

    assert value(samples, "workflow_engine_runs", workflow_id="diamond", status="COMPLETED") == 4
    assert value(samples, "workflow_engine_runs", workflow_id="diamond", status="RUNNING") == 1
    assert value(samples, "workflow_engine_runs", workflow_id="diamond", status="FAILED") == 0
    assert value(samples, "workflow_engine_runs", workflow_id="triple", status="FAILED") == 2
    assert value(samples, "workflow_engine_runs", workflow_id="triple", status="RUNNING") == 1

    # seeded stages take exactly 1 s: in the 1 s bucket, not in the 0.5 s one (the engine's run: wherever it fell)
    bucket = "workflow_engine_stage_duration_seconds_bucket"
    finished_d = WorkflowStage.objects.filter(run__workflow_id="diamond", stage_id="d", status="COMPLETED")
    assert finished_d.count() == 4
    fast = finished_d.filter(duration_ms__lte=500).count()
    assert fast <= 1
    assert value(samples, bucket, workflow_id="diamond", stage_id="d", le="0.5") == fast
    assert value(samples, bucket, workflow_id="diamond", stage_id="d", le="1.0") == 3 + fast
    finished_d = finished_d.count()
    assert value(samples, bucket, workflow_id="diamond", stage_id="d", le="+Inf") == finished_d
    assert value(samples, "workflow_engine_stage_duration_seconds_count", workflow_id="diamond", stage_id="d") == 4
    assert value(samples, "workflow_engine_stage_duration_seconds_sum", workflow_id="diamond", stage_id="d") >= 3.0
    assert value(samples, "workflow_engine_job_retries", workflow_id="diamond", stage_id="b") == 2

    assert value(samples, "workflow_engine_queue_jobs", state="due") == 1
    assert value(samples, "workflow_engine_queue_jobs", state="scheduled") == 1
    assert value(samples, "workflow_engine_queue_jobs", state="running") == 0
    assert 40 <= value(samples, "workflow_engine_queue_oldest_due_seconds") < 100

    ai = AICall.objects.by_model()
    for row in ai:
        model = row["model_id"]
        assert value(samples, "workflow_engine_ai_calls_total", model=model) == row["calls"]
        assert value(samples, "workflow_engine_ai_tokens_total", model=model, direction="input") == row["input_tokens"]
        assert value(samples, "workflow_engine_ai_cost_usd_total", model=model) == pytest.approx(float(row["cost"]))
    assert value(samples, "workflow_engine_ai_cost_usd_total", model="gpt-4o-mini") == pytest.approx(0.5 + 3 * 0.00625)


def test_ai_counters_do_not_go_down_when_runs_are_purged(client):
    from django.core.management import call_command

    seed_runs(4, workflow_id="diamond", ai_calls=3, start=timezone.now() - timedelta(days=60))
    before = scrape(client)
    call_command("purgeruns", "--older-than", "30d", verbosity=0)
    after = scrape(client)
    assert value(before, "workflow_engine_runs", workflow_id="diamond", status="COMPLETED") == 4
    assert not [k for k in after if k[0] == "workflow_engine_runs"]  # the run gauge follows the rows
    ai = {k: v for k, v in before.items() if k[0].startswith("workflow_engine_ai_")}
    assert ai
    assert {k: after[k] for k in ai} == ai


def test_empty_database_scrapes(client):
    samples = scrape(client)
    assert value(samples, "workflow_engine_queue_jobs", state="due") == 0
    assert value(samples, "workflow_engine_queue_oldest_due_seconds") == 0


def test_without_prometheus_client_the_view_says_what_to_install(client, monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImproperlyConfigured, match=r"pip install 'django-workflow-engine\[metrics\]'"):
        client.get("/metrics/")


def test_the_engine_needs_neither_prometheus_client_nor_the_metrics_module():
    # prometheus_client is blocked (django_rq imports it when it can; the engine must not need it), and the
    # engine, the worker and the maintenance tick never load the metrics module.
    code = (
        "import sys; sys.modules['prometheus_client'] = None; import django; django.setup(); "
        "from django_workflow_engine import engine; engine.kernel; "
        "import django_workflow_engine.hosts.maintenance, django_workflow_engine.hosts.worker; "
        "print(sorted(m for m in sys.modules if m.startswith('django_workflow_engine.ops')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
    )
    assert out.stdout.strip() == "[]", out.stderr


def test_scrape_reports_live_workers_and_runs_waiting_by_reason(client, settings):
    from django_workflow_engine.models import WorkflowRun, WorkflowWorker

    now = timezone.now()
    common = {"host": "h", "pid": 1, "queues": ["workflows"], "started_at": now}
    WorkflowWorker.objects.create(id="alive", transport="database", heartbeat_at=now, **common)
    WorkflowWorker.objects.create(id="alive-rq", transport="rq", heartbeat_at=now, **common)
    WorkflowWorker.objects.create(id="killed", transport="database", heartbeat_at=now - timedelta(hours=1), **common)
    WorkflowWorker.objects.create(id="stopped", transport="rq", heartbeat_at=now, stopped_at=now, **common)

    suspended = engine.start("triple", {"n": 1})
    engine.run_until_idle()
    assert WorkflowStage.objects.filter(run=suspended, stage_id="join").update(status="SUSPENDED") == 1
    retrying = engine.start("diamond", {"value": 1})
    WorkflowJob.objects.filter(run=retrying).update(attempt=1, available_at=now + timedelta(minutes=5))
    slot = engine.start("triple", {"n": 2})
    WorkflowRun.objects.filter(pk=slot.pk).update(status="PENDING", concurrency_key="acme")

    samples = scrape(client)
    assert value(samples, "workflow_engine_workers_live", transport="database") == 1
    assert value(samples, "workflow_engine_workers_live", transport="rq") == 1
    assert value(samples, "workflow_engine_runs_waiting", workflow_id="diamond", reason="retry_backoff") == 1
    assert value(samples, "workflow_engine_runs_waiting", workflow_id="triple", reason="suspended_poll") == 1
    assert value(samples, "workflow_engine_runs_waiting", workflow_id="triple", reason="concurrency_slot") == 1
    assert ("workflow_engine_runs_waiting", (("reason", "retry_backoff"), ("workflow_id", "triple"))) not in samples
