"""Prometheus metrics: counters and histograms the processes update, and gauges read from the
database at scrape time (the apps register them: events by type and status, the queue of due events).

With PROMETHEUS_MULTIPROC_DIR (set by default to var/prometheus) every process of a machine —
gunicorn workers, Celery's pool — writes its counters there and one scrape of `/metrics` sums
them. A worker-only machine exposes its own with `python manage.py metrics_server`.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Iterable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import Metric

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


# Gauges read from the database at scrape time, registered by the apps that own the tables
# (events registers the events by type and status): campaign knows none of them.
DATABASE_COLLECTORS: list[Callable[[], Iterable[Metric]]] = []


def register_database_collector(collect: Callable[[], Iterable[Metric]]) -> None:
    if collect not in DATABASE_COLLECTORS:
        DATABASE_COLLECTORS.append(collect)


class _DatabaseCollector:
    def collect(self) -> Iterable[Metric]:
        for collect in DATABASE_COLLECTORS:
            yield from collect()


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
    database.register(_DatabaseCollector())
    body += generate_latest(database)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
