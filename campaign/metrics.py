"""Prometheus metrics: counters and histograms the processes update, and gauges read from the
database at scrape time (events by type and status, the queue of due events).

With PROMETHEUS_MULTIPROC_DIR (set by default to var/prometheus) every process of a machine —
gunicorn workers, Celery's pool — writes its counters there and one scrape of `/metrics` sums
them. A worker-only machine exposes its own with `python manage.py metrics_server`.
"""

from __future__ import annotations

import hmac
import os

from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

EVENTS_RECEIVED = Counter("transactional_events_received_total", "Events accepted by the API", ["event_id"])
EVENT_LATENCY = Histogram(
    "transactional_event_latency_seconds",
    "From reception to the final status",
    ["status"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
RETRIES = Counter(
    "transactional_event_retries_total", "Temporary failures that scheduled a retry", ["channel"]
)
DELIVERIES = Counter("transactional_deliveries_total", "Delivery attempts by outcome", ["channel", "outcome"])


class DatabaseCollector:
    """Gauges computed from the database, the same from any machine."""

    def collect(self):
        from events.models import Event

        by_status = GaugeMetricFamily(
            "transactional_events", "Stored events by event type and status", labels=["event_id", "status"]
        )
        rows = (
            Event.objects.values("configuration__name", "status")
            .annotate(n=Count("id"))
            .order_by("configuration__name", "status")
        )
        for row in rows:
            by_status.add_metric([f"EVT{row['configuration__name']}", row["status"]], row["n"])
        yield by_status
        depth = GaugeMetricFamily(
            "transactional_queue_depth", "Pending events already due (waiting for a worker)"
        )
        depth.add_metric(
            [], Event.objects.filter(status="pending", next_attempt_at__lte=timezone.now()).count()
        )
        yield depth


def registry() -> CollectorRegistry:
    collected = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(collected)
    else:
        from prometheus_client import REGISTRY

        collected = REGISTRY
    return collected


def metrics_view(request: HttpRequest) -> HttpResponse:
    # Event counts by type and status are the organizations' business: only a development server
    # shows them to anyone; in production a scraper presents METRICS_TOKEN.
    token = settings.METRICS_TOKEN
    if not token and not settings.DEBUG:
        return HttpResponse(
            "metrics are off: set METRICS_TOKEN (scrapers send Authorization: Bearer <it>)\n",
            status=403,
            content_type="text/plain",
        )
    if token:
        given = request.META.get("HTTP_AUTHORIZATION", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return HttpResponse("unauthorized\n", status=401, content_type="text/plain")
    body = generate_latest(registry())
    database = CollectorRegistry()
    database.register(DatabaseCollector())
    body += generate_latest(database)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
