"""Prometheus metrics, computed from the database at scrape time.

Mount the view where Prometheus can reach it::

    path("metrics/", metrics_view)

Why from the database and not counters kept in each process: the database already holds every run, stage,
job and AI call, whichever process or machine produced them, so one scrape of any web process gives the truth
for the whole deployment, with no ``PROMETHEUS_MULTIPROC_DIR`` to share between processes (which cannot span
machines) and not one added statement on the hot path. The price is a few aggregate queries per scrape.

Rows that purges and reruns delete cannot back a counter (a counter must never go down), so runs, stage
durations and retries are exposed as gauges of the rows the database holds; AI calls are never deleted by
the engine (a purge keeps them), so AI calls, tokens and cost are true counters.

``prometheus_client`` (the ``metrics`` extra) is imported only when the view is called.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse

PREFIX = "workflow_engine"
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ImproperlyConfigured(
            "The workflow engine's metrics view needs prometheus_client: pip install 'django-workflow-engine[metrics]'"
        ) from None
    return prometheus_client


class EngineCollector:
    """A ``prometheus_client`` collector that reads the engine's tables on each ``collect()``."""

    def __init__(self, using: str = "default") -> None:
        self.using = using

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        started = time.perf_counter()
        yield from self._runs(GaugeMetricFamily)
        yield from self._stages(GaugeMetricFamily, HistogramMetricFamily)
        yield from self._queue(GaugeMetricFamily)
        yield from self._waiting(GaugeMetricFamily)
        yield from self._workers(GaugeMetricFamily)
        yield from self._ai(CounterMetricFamily)
        elapsed = GaugeMetricFamily(
            f"{PREFIX}_metrics_collect_seconds", "Time the database queries of this scrape took."
        )
        elapsed.add_metric([], time.perf_counter() - started)
        yield elapsed

    def _runs(self, gauge: Any) -> Iterator[Any]:
        from django.db.models import Count

        from ..models import Status, WorkflowRun

        runs = gauge(
            f"{PREFIX}_runs",
            "Runs in the database by workflow and status (started = all statuses; purged runs are not counted).",
            labels=["workflow_id", "status"],
        )
        rows = (
            WorkflowRun.objects.using(self.using)
            .order_by()
            .values_list("workflow_id", "status")
            .annotate(n=Count("id"))
        )
        seen: set[str] = set()
        for workflow_id, status, n in rows:
            runs.add_metric([workflow_id, status], n)
            seen.add(workflow_id)
        for workflow_id in sorted(seen):
            present = {s for w, s, _ in rows if w == workflow_id}
            for status in Status.values:
                if status != Status.SKIPPED and status not in present:
                    runs.add_metric([workflow_id, status], 0)
        yield runs

    def _stages(self, gauge: Any, histogram: Any) -> Iterator[Any]:
        from django.db.models import Count, F, Q, Sum

        from ..models import Status, WorkflowJob, WorkflowStage

        buckets = {f"le_{i}": Count("id", filter=Q(duration_ms__lte=b * 1000)) for i, b in enumerate(DURATION_BUCKETS)}
        rows = (
            WorkflowStage.objects.using(self.using)
            .filter(status__in=(Status.COMPLETED, Status.FAILED), duration_ms__isnull=False)
            .order_by()
            .values("stage_id", workflow_id=F("run__workflow_id"))
            .annotate(count=Count("id"), total_ms=Sum("duration_ms"), **buckets)
            .order_by("workflow_id", "stage_id")
        )
        durations = histogram(
            f"{PREFIX}_stage_duration_seconds",
            "Execution time of the finished stages the database holds, by workflow and stage.",
            labels=["workflow_id", "stage_id"],
        )
        for row in rows:
            cumulative = [(str(b), row[f"le_{i}"]) for i, b in enumerate(DURATION_BUCKETS)]
            cumulative.append(("+Inf", row["count"]))
            durations.add_metric([row["workflow_id"], row["stage_id"]], cumulative, (row["total_ms"] or 0) / 1000)
        yield durations

        suspended = gauge(
            f"{PREFIX}_stages_suspended",
            "Stages waiting (SUSPENDED) by workflow and stage.",
            labels=["workflow_id", "stage_id"],
        )
        for workflow_id, stage_id, n in (
            WorkflowStage.objects.using(self.using)
            .filter(status=Status.SUSPENDED)
            .order_by()
            .values_list("run__workflow_id", "stage_id")
            .annotate(n=Count("id"))
        ):
            suspended.add_metric([workflow_id, stage_id], n)
        yield suspended

        retries = gauge(
            f"{PREFIX}_job_retries",
            "Redeliveries (attempts after the first) of the jobs the database holds, by workflow and stage.",
            labels=["workflow_id", "stage_id"],
        )
        for workflow_id, stage_id, n in (
            WorkflowJob.objects.using(self.using)
            .filter(attempt__gt=1)
            .order_by()
            .values_list("workflow_id", "stage_id")
            .annotate(n=Sum(F("attempt") - 1))
        ):
            retries.add_metric([workflow_id, stage_id], n)
        yield retries

    def _queue(self, gauge: Any) -> Iterator[Any]:
        from django.db.models import Count, Min, Q
        from django.utils import timezone

        from ..models import Status, WorkflowJob

        now = timezone.now()
        jobs = WorkflowJob.objects.using(self.using)
        pending = jobs.filter(status=Status.PENDING).aggregate(
            due=Count("id", filter=Q(available_at__lte=now)),
            scheduled=Count("id", filter=Q(available_at__gt=now)),
            oldest=Min("available_at", filter=Q(available_at__lte=now)),
        )
        depth = gauge(
            f"{PREFIX}_queue_jobs", "Jobs by state: due (runnable now), scheduled (later), running.", labels=["state"]
        )
        depth.add_metric(["due"], pending["due"])
        depth.add_metric(["scheduled"], pending["scheduled"])
        depth.add_metric(["running"], jobs.filter(status=Status.RUNNING).count())
        yield depth
        oldest = gauge(
            f"{PREFIX}_queue_oldest_due_seconds", "How long the oldest due job has been runnable (0: none is due)."
        )
        oldest.add_metric([], (now - pending["oldest"]).total_seconds() if pending["oldest"] else 0.0)
        yield oldest

    def _waiting(self, gauge: Any) -> Iterator[Any]:
        from django.db.models import Count
        from django.utils import timezone

        from ..models import Status, WorkflowJob, WorkflowRun, WorkflowStage

        now = timezone.now()
        waiting = gauge(
            f"{PREFIX}_runs_waiting",
            "Runs waiting, by workflow and reason: concurrency_slot (PENDING for a slot), suspended_poll (a "
            "SUSPENDED stage), retry_backoff (a failed attempt's job not yet due again).",
            labels=["workflow_id", "reason"],
        )
        queries = {
            "concurrency_slot": WorkflowRun.objects.using(self.using)
            .waiting_for_slot()
            .order_by()
            .values_list("workflow_id")
            .annotate(n=Count("id")),
            "suspended_poll": WorkflowStage.objects.using(self.using)
            .filter(status=Status.SUSPENDED)
            .order_by()
            .values_list("run__workflow_id")
            .annotate(n=Count("run_id", distinct=True)),
            "retry_backoff": WorkflowJob.objects.using(self.using)
            .filter(status=Status.PENDING, attempt__gt=0, available_at__gt=now)
            .order_by()
            .values_list("workflow_id")
            .annotate(n=Count("run_id", distinct=True)),
        }
        for reason, rows in queries.items():
            for workflow_id, n in rows:
                waiting.add_metric([workflow_id, reason], n)
        yield waiting

    def _workers(self, gauge: Any) -> Iterator[Any]:
        from .workers import live_workers

        workers = gauge(
            f"{PREFIX}_workers_live",
            "Worker processes that beat within the grace (2.5 heartbeats), by transport.",
            labels=["transport"],
        )
        counts: dict[str, int] = {"database": 0, "rq": 0}
        for worker in live_workers(using=self.using):
            counts[worker.transport] = counts.get(worker.transport, 0) + 1
        for transport, n in sorted(counts.items()):
            workers.add_metric([transport], n)
        yield workers

    def _ai(self, counter: Any) -> Iterator[Any]:
        from ..models import AICall

        calls = counter(f"{PREFIX}_ai_calls", "AI provider calls by model.", labels=["model"])
        tokens = counter(f"{PREFIX}_ai_tokens", "AI tokens by model and direction.", labels=["model", "direction"])
        cost = counter(f"{PREFIX}_ai_cost_usd", "AI spend of the priced calls, in USD, by model.", labels=["model"])
        for row in AICall.objects.using(self.using).by_model():
            model = row["model_id"]
            calls.add_metric([model], row["calls"])
            for direction in ("input", "output", "cached"):
                tokens.add_metric([model, direction], row[f"{direction}_tokens"])
            cost.add_metric([model], float(row["cost"]))
        yield calls
        yield tokens
        yield cost


def render_metrics(using: str = "default") -> tuple[bytes, str]:
    """The exposition text of the engine's metrics and its content type."""
    prometheus = _prometheus()
    registry = prometheus.CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(using))
    return prometheus.generate_latest(registry), prometheus.CONTENT_TYPE_LATEST


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``path("metrics/", metrics_view)``: the engine's metrics in the Prometheus text format.

    The view has no access control of its own: mount it where only Prometheus can reach it, or wrap it
    (e.g. in a decorator checking a token or the client address).
    """
    body, content_type = render_metrics()
    return HttpResponse(body, content_type=content_type)
