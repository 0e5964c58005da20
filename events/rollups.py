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
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, QuerySet
from django.db.models.functions import Left, TruncHour
from django.utils import timezone

from campaign.models import Organization, Profile
from events.models import (
    LATENCY_BUCKETS,
    Event,
    EventConfiguration,
    EventDelivery,
    HourlyRollup,
    RetiredCounts,
    RollupCounts,
    RollupProgress,
    Unsubscription,
)
from messages import services as message_services
from messages.models import Delivery, TrackingHit

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
            retired = RetiredCounts.objects.filter(created_at__gte=since).order_by()
            hours.update(hour_of(h) for h in retired.values_list("hour", flat=True).distinct())
            hours.update(_hours_of_hits_since(since))
        for hour in sorted(hours):
            recompute_hour(hour)
        progress.last_run_at = now
        progress.save(update_fields=["last_run_at"])
    return len(hours)


def _hours_of(events) -> Iterable[dt.datetime]:
    truncated = events.annotate(h=TruncHour("created_at", tzinfo=UTC)).values_list("h", flat=True)
    return (hour_of(h) for h in truncated.order_by().distinct())


# Which events to count, as a Q on a model reaching the event through this prefix ("", "event__").
Where = Callable[[str], Q]
# (hour, configuration id, version id or None): one rollup row.
HourKey = tuple[dt.datetime, int, int | None]
# The row of a key, made when first asked for.
Row = Callable[[dt.datetime, int, int | None], Any]


def recompute_hour(hour: dt.datetime) -> list[HourlyRollup]:
    """The rows of one hour, counted again from its events (plus what was retired of the hour
    before a deletion) and written in place of the old ones: the same rows however often it runs."""
    start, end = hour_of(hour), hour_of(hour) + HOUR
    counted = count(lambda to: Q(**{f"{to}created_at__gte": start, f"{to}created_at__lt": end}))
    rows = {(configuration, version): made for (_, configuration, version), made in counted.items()}
    for retired in RetiredCounts.objects.filter(hour=start).order_by("pk"):
        key = (retired.configuration_id, retired.version_id)
        if key not in rows:
            rows[key] = _empty(HourlyRollup, (start, *key))
        _add(rows[key], retired)
    with transaction.atomic():
        HourlyRollup.objects.filter(hour=start).delete()
        _fill_configuration(rows.values())
        HourlyRollup.objects.bulk_create(rows.values())
    return list(rows.values())


def retire(event_ids: Iterable[int]) -> int:
    """Keep the counts of these events before they are deleted (a purge, a person's erasure): call
    it in the transaction that deletes them. Their hours are recomputed by the job's next run, with
    these counts added. Returns how many rows of counts were kept."""
    ids = list(event_ids)
    if not ids:
        return 0
    kept = count(lambda to: Q(**{f"{to}pk__in": ids}), model=RetiredCounts)
    RetiredCounts.objects.bulk_create(kept.values())
    return len(kept)


def count(where: Where, *, model: type[RollupCounts] = HourlyRollup) -> dict[HourKey, Any]:
    """The counts of the events `where` selects, by reception hour, event type and version.

    A final event counts under the version it was sent with; an event not final yet (or ended
    without a version) under no version. Each delivery attempt counts under the version it
    rendered; opt-outs and tracking rows under their event's version.
    """
    rows: dict[HourKey, Any] = {}

    def row(hour: dt.datetime, configuration_id: int, version_id: int | None) -> Any:
        key = (hour_of(hour), configuration_id, version_id)
        if key not in rows:
            rows[key] = _empty(model, key)
        return rows[key]

    events = Event.objects.filter(where("")).order_by().annotate(h=TruncHour("created_at", tzinfo=UTC))
    latency = ExpressionWrapper(F("updated_at") - F("created_at"), output_field=DurationField())
    buckets = {
        f"le{i}": Count("pk", filter=Q(latency__lte=dt.timedelta(seconds=bound)))
        for i, bound in enumerate(LATENCY_BUCKETS)
    }
    by_status = (
        events.annotate(latency=latency)
        .values("h", "configuration_id", "message_version_id", "status")
        .annotate(n=Count("pk"), **buckets)
    )
    for counted in by_status:
        field = STATUS_FIELDS.get(counted["status"])
        final_version = counted["message_version_id"] if field else None
        target = row(counted["h"], counted["configuration_id"], final_version)
        target.received += counted["n"]
        if field is None:  # not final yet: received only
            continue
        setattr(target, field, getattr(target, field) + counted["n"])
        upto_bound: Any = counted  # the `le<i>` counts, named at run time
        cumulative = [upto_bound[f"le{i}"] for i in range(len(LATENCY_BUCKETS))] + [counted["n"]]
        previous = 0
        for i, upto in enumerate(cumulative):
            target.latency_buckets[i] += upto - previous
            previous = upto

    reasons: dict[HourKey, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    failed = (
        events.filter(status__in=list(FAILURE_FIELDS))
        .annotate(reason=Left("last_error", REASON_LENGTH))
        .values("h", "configuration_id", "message_version_id", "status", "reason")
        .annotate(n=Count("pk"))
    )
    for failure in failed:
        key: HourKey = (hour_of(failure["h"]), failure["configuration_id"], failure["message_version_id"])
        reasons[key][failure["status"]][failure["reason"] or "(no reason given)"] += failure["n"]
    for key, statuses in reasons.items():
        row(*key).failure_reasons = _top_reasons(statuses)

    _count_outcomes(EventDelivery.objects.filter(where("event__")), row)

    unsubscribed = (
        Unsubscription.objects.filter(where("event__"))
        .order_by()
        .annotate(h=TruncHour("event__created_at", tzinfo=UTC))
        .values("h", "event__configuration_id", "event__message_version_id")
        .annotate(n=Count("pk"))
    )
    for opted_out in unsubscribed:
        target = row(
            opted_out["h"], opted_out["event__configuration_id"], opted_out["event__message_version_id"]
        )
        target.unsubscribed += opted_out["n"]

    _count_hits(TrackingHit.objects.filter(where("delivery__event_link__event__")), row)
    _fill_configuration(rows.values())
    return rows


def _count_outcomes(links: QuerySet[EventDelivery], row: Row) -> None:
    """Each delivery attempt of an event, under the version it rendered."""
    outcomes = (
        links.order_by()
        .annotate(h=TruncHour("event__created_at", tzinfo=UTC))
        .values("h", "event__configuration_id", "delivery__version_id", "delivery__outcome")
        .annotate(n=Count("pk"))
    )
    for outcome in outcomes:
        target = row(outcome["h"], outcome["event__configuration_id"], outcome["delivery__version_id"])
        target.sent += outcome["n"]
        field = OUTCOME_FIELDS.get(outcome["delivery__outcome"])
        if field:
            setattr(target, field, getattr(target, field) + outcome["n"])


HIT_EVENT = "delivery__event_link__event__"
OPEN, CLICK = Q(kind=TrackingHit.Kind.OPEN), Q(kind=TrackingHit.Kind.CLICK)


def _count_hits(hits: QuerySet[TrackingHit], row: Row) -> None:
    """Opens and clicks (messages.tracking), under their event's reception hour and the version of
    the delivery they came from: every hit, and the unique ones (a delivery's first human hit)."""
    counted = (
        hits.filter(**{f"{HIT_EVENT}isnull": False})
        .order_by()
        .annotate(h=TruncHour(f"{HIT_EVENT}created_at", tzinfo=UTC))
        .values("h", f"{HIT_EVENT}configuration_id", "delivery__version_id")
        .annotate(
            opened=Count("pk", filter=OPEN),
            opened_unique=Count("pk", filter=OPEN & Q(first=True)),
            clicked=Count("pk", filter=CLICK),
            clicked_unique=Count("pk", filter=CLICK & Q(first=True)),
        )
    )
    for hit in counted:
        target = row(hit["h"], hit[f"{HIT_EVENT}configuration_id"], hit["delivery__version_id"])
        for field in ("opened", "opened_unique", "clicked", "clicked_unique"):
            setattr(target, field, getattr(target, field) + hit[field])


def _hours_of_hits_since(since: dt.datetime) -> set[dt.datetime]:
    """The reception hours of the events opened or clicked since then (the hits' index by
    organization and time, every organization at once)."""
    organizations = list(Organization.objects.values_list("pk", flat=True))
    hits = TrackingHit.objects.filter(organization_id__in=organizations, created_at__gte=since)
    hours = hits.order_by().annotate(h=TruncHour(f"{HIT_EVENT}created_at", tzinfo=UTC))
    return {hour_of(h) for h in hours.values_list("h", flat=True).distinct() if h is not None}


def _empty(model: type[RollupCounts], key: HourKey) -> Any:
    hour, configuration_id, version_id = key
    return model(
        configuration_id=configuration_id,
        version_id=version_id,
        hour=hour,
        latency_buckets=[0] * (len(LATENCY_BUCKETS) + 1),
        failure_reasons={},
    )


def _fill_configuration(rows: Iterable[Any]) -> None:
    """Each row's organization (and channel, for rollups) from its event type."""
    rows = list(rows)
    configurations = EventConfiguration.objects.filter(pk__in={r.configuration_id for r in rows}).order_by()
    known = {
        pk: (channel, org)
        for pk, channel, org in configurations.values_list("pk", "channel", "organization_id")
    }
    for made in rows:
        channel, made.organization_id = known[made.configuration_id]
        if isinstance(made, HourlyRollup):
            made.channel = channel


def _top_reasons(statuses: dict[str, Counter[str]]) -> dict[str, list[list[Any]]]:
    return {
        status: [[reason, n] for reason, n in counter.most_common(REASONS_KEPT)]
        for status, counter in sorted(statuses.items())
    }


def _add(total: RollupCounts, more: RollupCounts) -> None:
    for name in COUNT_FIELDS:
        setattr(total, name, getattr(total, name) + getattr(more, name))
    for i, n in enumerate(more.latency_buckets[: len(total.latency_buckets)]):
        total.latency_buckets[i] += n
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    for source in (total.failure_reasons or {}, more.failure_reasons or {}):
        for status, listed in source.items():
            for reason, n in listed:
                reasons[status][reason] += n
    total.failure_reasons = _top_reasons(reasons)


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
