"""How long history is kept: events, deliveries (and their opens and clicks) older than their
retention go, in bounded batches of DELETEs (the beat's `events.purge_history`, `manage.py purge`);
so do the draft tries past their day (messages.draft_try).

* Retention is in days per table (EVENT_, DELIVERY_, TRACKING_RETENTION_DAYS; 0: forever), and an
  organization may set its own (Organization.*_retention_days).
* An event goes only once final, and never within the Idempotency-Key window
  (IDEMPOTENCY_WINDOW_SECONDS): a retried POST must still find the event its key made.
* A delivery, an open or a click goes only once its event is gone (or if it has none: a proof): the
  pipeline reads an event's deliveries to know its message went, and the reports' rollups count an
  event with its deliveries, opens and clicks whenever its hour is recomputed, so these must not
  vanish from under a kept event. A shorter DELIVERY_/TRACKING_RETENTION_DAYS takes effect when the
  event goes; a longer one keeps them (unlinked) after it.
* Rollups are other rows (the reports' hourly counts): a purge never deletes them, and each batch
  of events first hands its counts to `rollups.retire` in the deleting transaction, so the reports
  of a purged period stay as they were even when its hour is counted again.

Batched DELETEs rather than partitions: each batch is one short transaction on the primary key (no
long lock, no table rewrite), the same on SQLite and PostgreSQL, and Django's cascade takes an
event's history and links with it. Partitioning by time would make a purge a DROP, but it changes
the primary keys and unique constraints (pkey, Idempotency-Key) every table relies on.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce

from django.conf import settings
from django.db import transaction
from django.db.models import Model, Q, QuerySet
from django.utils import timezone

from campaign.models import Organization
from events import rollups
from events.models import FINAL_STATUSES, Event
from messages import draft_try
from messages.models import Delivery, DraftTry, TrackingHit


@dataclass(frozen=True)
class Table:
    """One kind of history: its label in counts, its retention setting and organization column."""

    label: str
    setting: str
    organization_field: str
    # The purgeable rows, given "old enough", now, and (to count ahead) the events that go before.
    rows: Callable[[Q, dt.datetime, QuerySet | None], QuerySet]


def _old_enough(*, setting: str, organization_field: str, field: str, now: dt.datetime) -> Q | None:
    """Rows past their organization's retention (or the setting's), or None: nothing is that old."""
    default = int(getattr(settings, setting))
    overrides = dict(
        Organization.objects.filter(**{f"{organization_field}__isnull": False}).values_list(
            "pk", organization_field
        )
    )
    conditions = [
        Q(organization_id=organization_id, **{f"{field}__lt": now - dt.timedelta(days=days)})
        for organization_id, days in overrides.items()
    ]
    if default > 0:
        cutoff = now - dt.timedelta(days=default)
        conditions.append(Q(**{f"{field}__lt": cutoff}) & ~Q(organization_id__in=list(overrides)))
    return reduce(operator.or_, conditions) if conditions else None


def _events(old: Q, now: dt.datetime, going: QuerySet | None = None) -> QuerySet:
    window = now - dt.timedelta(seconds=settings.IDEMPOTENCY_WINDOW_SECONDS)
    return Event.objects.filter(old, status__in=FINAL_STATUSES, created_at__lt=window)


def _deliveries(old: Q, now: dt.datetime, going: QuerySet | None = None) -> QuerySet:
    without_event = Q(event_link__isnull=True)
    if going is not None:
        without_event |= Q(event_link__event__in=going.values("pk"))
    return Delivery.objects.filter(old).filter(without_event)


def _tracking_hits(old: Q, now: dt.datetime, going: QuerySet | None = None) -> QuerySet:
    without_event = Q(delivery__event_link__isnull=True)
    if going is not None:
        without_event |= Q(delivery__event_link__event__in=going.values("pk"))
    return TrackingHit.objects.filter(old).filter(without_event)


# In this order: the events first, so that their deliveries (now without an event) can go next.
TABLES = [
    Table("events.Event", "EVENT_RETENTION_DAYS", "event_retention_days", _events),
    Table("transactional.Delivery", "DELIVERY_RETENTION_DAYS", "delivery_retention_days", _deliveries),
    Table("transactional.TrackingHit", "TRACKING_RETENTION_DAYS", "tracking_retention_days", _tracking_hits),
]


def purgeable(*, now: dt.datetime | None = None, ahead: bool = False) -> list[tuple[str, QuerySet]]:
    """(label, rows past retention) of each table, in the order they are purged. `ahead`: counting
    before anything is deleted, so the rows of the events that go first count as without event."""
    now = now or timezone.now()
    found = []
    going: QuerySet | None = None
    for table in TABLES:
        old = _old_enough(
            setting=table.setting, organization_field=table.organization_field, field="created_at", now=now
        )
        rows = table.rows(old, now, going) if old is not None else table.rows(Q(pk__in=[]), now, None).none()
        if ahead and table.rows is _events:
            going = rows
        found.append((table.label, rows.order_by()))
    return found


EXPIRED_TRIES = "transactional.DraftTry"  # a draft tried on real events, kept a day (messages.draft_try)


def count_purgeable(*, now: dt.datetime | None = None) -> dict[str, int]:
    """What a purge would delete now, per table (the dry run)."""
    counts = {label: rows.count() for label, rows in purgeable(now=now, ahead=True)}
    counts[EXPIRED_TRIES] = DraftTry.objects.filter(expires_at__lte=now or timezone.now()).count()
    return counts


def delete_in_batches(
    rows: QuerySet,
    *,
    batch_size: int,
    max_batches: int | None,
    before: Callable[[list[int]], object] | None = None,
) -> Counter[str]:
    """Delete `rows` by primary key, `batch_size` at a time (each batch its own short transaction,
    `before` called in it with the batch's keys), at most `max_batches` batches; the counts per
    model include what cascaded."""
    deleted: Counter[str] = Counter()
    model: type[Model] = rows.model
    done = 0
    while max_batches is None or done < max_batches:
        keys = list(rows.values_list("pk", flat=True)[:batch_size])
        if not keys:
            break
        with transaction.atomic():
            if before is not None:
                before(keys)
            _, per_model = model._default_manager.filter(pk__in=keys).delete()
        deleted.update(per_model)
        done += 1
        if len(keys) < batch_size:
            break
    return deleted


def purge(*, now: dt.datetime | None = None, max_batches: int | None = None) -> dict[str, int]:
    """Delete what is past retention; the beat passes RETENTION_MAX_BATCHES so that one run is
    bounded, the command deletes everything. Answers rows deleted per table, cascades included."""
    tables = purgeable(now=now)
    deleted: Counter[str] = Counter({label: 0 for label, _ in tables})
    for _, rows in tables:
        # An event's counts (with its deliveries, opens and clicks) stay in the reports' rollups.
        before = rollups.retire if rows.model is Event else None
        deleted.update(
            delete_in_batches(
                rows, batch_size=int(settings.RETENTION_BATCH_SIZE), max_batches=max_batches, before=before
            )
        )
    deleted[EXPIRED_TRIES] += draft_try.purge_expired(now=now)  # few rows: their day is their bound
    return dict(deleted)
