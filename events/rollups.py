"""Hourly rollups: the counts reports read, kept up to date by a periodic job on the beat.

Every count of an event (received, its final status and reason, its deliveries' outcomes, its
latency, later its opens and clicks) goes to the hour it was received in (UTC), under the message
version it was sent with. The job (`refresh`, every ROLLUP_INTERVAL_SECONDS) finds the hours
touched since its last run — the reception hours of the events whose row changed since then (the
index on `updated_at`) — and recomputes each of those hours whole from its events: recomputing an
hour is idempotent, a run that dies is redone by the next, and two runs never interleave (they lock
the job's own row, which no worker touches). Nothing is counted on the POST path or by the
workers, so an accepted POST stays one INSERT and no worker waits on a shared counter row.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.db.models.functions import Left, TruncHour
from django.utils import timezone

from campaign.models import Profile
from events.models import (
    LATENCY_BUCKETS,
    Event,
    EventConfiguration,
    EventDelivery,
    HourlyRollup,
    RollupProgress,
    Unsubscription,
)
from messages import services as message_services
from messages.models import Delivery

S = Event.Status
UTC = dt.UTC
HOUR = dt.timedelta(hours=1)
FAILURE_FIELDS: dict[str, str] = {
    S.IGNORED: "ignored",
    S.DELIVERY_FAILED: "delivery_failed",
    S.ROUTING_FAILED: "routing_failed",
    S.TOO_OLD: "too_old",
    S.TARGETING_FAILED: "targeting_failed",
}
STATUS_FIELDS: dict[str, str] = {S.PROCESSED: "processed", **FAILURE_FIELDS}
OUTCOME_FIELDS: dict[str, str] = {
    Delivery.Outcome.SENT: "delivered",
    Delivery.Outcome.PERMANENT_FAILURE: "bounced_hard",
    Delivery.Outcome.TEMPORARY_FAILURE: "bounced_soft",
}
ENGAGEMENT_FIELDS = ("opened", "opened_unique", "clicked", "clicked_unique", "unsubscribed")
REASONS_KEPT = 5  # per failure status and hour
REASON_LENGTH = 200

# (configuration id, version id or None): one rollup row of an hour.
Key = tuple[int, int | None]
# Opens, clicks and unsubscriptions of the events received in [start, end), by key: handed in by
# the app that records them (tracking), read at rollup time like everything else.
EngagementCounter = Callable[[dt.datetime, dt.datetime], dict[Key, dict[str, int]]]
ENGAGEMENT_COUNTERS: list[EngagementCounter] = []
# The hours (reception hours of events) whose engagement rows changed since a time.
TouchedHours = Callable[[dt.datetime], Iterable[dt.datetime]]
ENGAGEMENT_TOUCHED: list[TouchedHours] = []


def record_unsubscription(profile: Profile, event_pkey: str) -> None:
    """An opt-out through an event's link (messages.services.opt_out tells): counted for the event
    the link was made for, if it was sent to this profile; once per event."""
    if event_pkey:
        event = Event.objects.filter(pkey=event_pkey, profile_id=profile.pk).first()
        if event is not None:
            Unsubscription.objects.get_or_create(event=event)


def hand_in() -> None:
    if record_unsubscription not in message_services.OPT_OUT_LISTENERS:
        message_services.OPT_OUT_LISTENERS.append(record_unsubscription)


def hour_of(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def refresh(*, now: dt.datetime | None = None) -> int:
    """Recompute the hours touched since the last run (every hour of history on the first run).
    Returns how many hours were recomputed."""
    now = now or timezone.now()
    RollupProgress.objects.get_or_create(pk=1)
    with transaction.atomic():
        progress = RollupProgress.objects.select_for_update().get(pk=1)
        if progress.last_run_at is None:
            hours = set(_hours_of(Event.objects.all()))
        else:
            since = progress.last_run_at - dt.timedelta(seconds=settings.ROLLUP_GRACE_SECONDS)
            hours = set(_hours_of(Event.objects.filter(updated_at__gte=since)))
            unsubscribed = Event.objects.filter(unsubscription__created_at__gte=since)
            hours.update(_hours_of(unsubscribed))
            for touched in ENGAGEMENT_TOUCHED:
                hours.update(hour_of(h) for h in touched(since))
        for hour in sorted(hours):
            recompute_hour(hour)
        progress.last_run_at = now
        progress.save(update_fields=["last_run_at"])
    return len(hours)


def _hours_of(events) -> Iterable[dt.datetime]:
    truncated = events.annotate(h=TruncHour("created_at", tzinfo=UTC)).values_list("h", flat=True)
    return (hour_of(h) for h in truncated.order_by().distinct())


def recompute_hour(hour: dt.datetime) -> list[HourlyRollup]:
    """The rows of one hour, counted again from its events and written in place of the old ones."""
    start, end = hour_of(hour), hour_of(hour) + HOUR
    rows: dict[Key, HourlyRollup] = {}
    events = Event.objects.filter(created_at__gte=start, created_at__lt=end).order_by()

    def row(configuration_id: int, version_id: int | None) -> HourlyRollup:
        key = (configuration_id, version_id)
        if key not in rows:
            rows[key] = HourlyRollup(
                configuration_id=configuration_id,
                version_id=version_id,
                hour=start,
                latency_buckets=[0] * (len(LATENCY_BUCKETS) + 1),
                failure_reasons={},
            )
        return rows[key]

    latency = ExpressionWrapper(F("updated_at") - F("created_at"), output_field=DurationField())
    buckets = {
        f"le{i}": Count("pk", filter=Q(latency__lte=dt.timedelta(seconds=bound)))
        for i, bound in enumerate(LATENCY_BUCKETS)
    }
    by_status = (
        events.annotate(latency=latency)
        .values("configuration_id", "message_version_id", "status", "organization_id")
        .annotate(n=Count("pk"), **buckets)
    )
    for counted in by_status:
        target = row(counted["configuration_id"], counted["message_version_id"])
        target.organization_id = counted["organization_id"]
        target.received += counted["n"]
        field = STATUS_FIELDS.get(counted["status"])
        if field is None:  # not final yet: received only
            continue
        setattr(target, field, getattr(target, field) + counted["n"])
        upto_bound: Any = counted  # the `le<i>` counts, named at run time
        cumulative = [upto_bound[f"le{i}"] for i in range(len(LATENCY_BUCKETS))] + [counted["n"]]
        previous = 0
        for i, upto in enumerate(cumulative):
            target.latency_buckets[i] += upto - previous
            previous = upto

    reasons: dict[Key, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    failed = (
        events.filter(status__in=list(FAILURE_FIELDS))
        .annotate(reason=Left("last_error", REASON_LENGTH))
        .values("configuration_id", "message_version_id", "status", "reason")
        .annotate(n=Count("pk"))
    )
    for failure in failed:
        key: Key = (failure["configuration_id"], failure["message_version_id"])
        reasons[key][failure["status"]][failure["reason"] or "(no reason given)"] += failure["n"]
    for key, statuses in reasons.items():
        rows[key].failure_reasons = {
            status: [[reason, n] for reason, n in counter.most_common(REASONS_KEPT)]
            for status, counter in statuses.items()
        }

    outcomes = (
        EventDelivery.objects.filter(event__created_at__gte=start, event__created_at__lt=end)
        .order_by()
        .values("event__configuration_id", "event__message_version_id", "delivery__outcome")
        .annotate(n=Count("pk"))
    )
    for outcome in outcomes:
        target = row(outcome["event__configuration_id"], outcome["event__message_version_id"])
        target.sent += outcome["n"]
        field = OUTCOME_FIELDS.get(outcome["delivery__outcome"])
        if field:
            setattr(target, field, getattr(target, field) + outcome["n"])

    unsubscribed = (
        Unsubscription.objects.filter(event__created_at__gte=start, event__created_at__lt=end)
        .order_by()
        .values("event__configuration_id", "event__message_version_id")
        .annotate(n=Count("pk"))
    )
    for opted_out in unsubscribed:
        target = row(opted_out["event__configuration_id"], opted_out["event__message_version_id"])
        target.unsubscribed += opted_out["n"]

    for count in ENGAGEMENT_COUNTERS:
        for engaged, values in count(start, end).items():
            if engaged in rows:
                for field in ENGAGEMENT_FIELDS:
                    setattr(rows[engaged], field, getattr(rows[engaged], field) + values.get(field, 0))

    configurations = EventConfiguration.objects.filter(pk__in={k[0] for k in rows}).order_by()
    channels = dict(configurations.values_list("pk", "channel"))
    for (configuration_id, _), made in rows.items():
        made.channel = channels[configuration_id]
    with transaction.atomic():
        HourlyRollup.objects.filter(hour=start).delete()
        HourlyRollup.objects.bulk_create(rows.values())
    return list(rows.values())


# --- reading ------------------------------------------------------------------------------------

COUNT_FIELDS = (
    "received",
    "processed",
    *FAILURE_FIELDS.values(),
    "sent",
    "delivered",
    "bounced_hard",
    "bounced_soft",
    *ENGAGEMENT_FIELDS,
)


def sums(rows) -> dict[str, Any]:
    """The counts of these rollup rows added up (in the database)."""
    totals = rows.order_by().aggregate(**{field: Sum(field) for field in COUNT_FIELDS})
    return {field: totals[field] or 0 for field in COUNT_FIELDS}
