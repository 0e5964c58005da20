"""The events' gauges, read from the database at each scrape of `/metrics` (the same from any
machine); registered with campaign.metrics when the app is ready."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from events.models import Event, format_event_id


def collect_event_gauges() -> Iterator[GaugeMetricFamily]:
    by_status = GaugeMetricFamily(
        "transactional_events", "Stored events by event type and status", labels=["event_id", "status"]
    )
    rows = (
        Event.objects.values("configuration__name", "status")
        .annotate(n=Count("id"))
        .order_by("configuration__name", "status")
    )
    for row in rows:
        by_status.add_metric([format_event_id(row["configuration__name"]), row["status"]], row["n"])
    yield by_status
    depth = GaugeMetricFamily(
        "transactional_queue_depth", "Pending events already due (waiting for a worker)"
    )
    depth.add_metric(
        [], Event.objects.filter(status=Event.Status.PENDING, next_attempt_at__lte=timezone.now()).count()
    )
    yield depth
