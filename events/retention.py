"""How long history is kept: events, deliveries (and their opens and clicks) older than their
retention go, in bounded batches of DELETEs (the beat's `events.purge_history`, `manage.py purge`).

* Retention is in days per table (EVENT_, DELIVERY_, TRACKING_RETENTION_DAYS; 0: forever), and an
  organization may set its own (Organization.*_retention_days).
* An event goes only once final, and never within the Idempotency-Key window
  (IDEMPOTENCY_WINDOW_SECONDS): a retried POST must still find the event its key made.
* A delivery of an event still in progress stays: the pipeline reads it to know the message went.
* Rollups are other rows (the reports' hourly counts): a purge never touches them, and each batch
  first hands its rows' counts to events.rollups (retire), so the reports of a purged period stay
  as they were even when their hour is counted again.

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
from messages.models import Delivery, TrackingHit

NON_FINAL = [status for status in Event.Status.values if status not in FINAL_STATUSES]


@dataclass(frozen=True)
class Table:
    """One kind of history: its label in counts, its retention setting and organization column."""

    label: str
    setting: str
    organization_field: str
    rows: Callable[[Q, dt.datetime], QuerySet]  # the purgeable rows, given "old enough" and now


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


def _events(old: Q, now: dt.datetime) -> QuerySet:
    window = now - dt.timedelta(seconds=settings.IDEMPOTENCY_WINDOW_SECONDS)
    return Event.objects.filter(old, status__in=FINAL_STATUSES, created_at__lt=window)


def _deliveries(old: Q, now: dt.datetime) -> QuerySet:
    return Delivery.objects.filter(old).exclude(event_link__event__status__in=NON_FINAL)


TABLES = [
    Table("events.Event", "EVENT_RETENTION_DAYS", "event_retention_days", _events),
    Table("transactional.Delivery", "DELIVERY_RETENTION_DAYS", "delivery_retention_days", _deliveries),
]


def purgeable(*, now: dt.datetime | None = None) -> list[tuple[str, QuerySet]]:
    """(label, rows past retention) of each table, in the order they are purged."""
    now = now or timezone.now()
    found = []
    for table in TABLES:
        old = _old_enough(
            setting=table.setting, organization_field=table.organization_field, field="created_at", now=now
        )
        rows = table.rows(old, now) if old is not None else table.rows(Q(pk__in=[]), now).none()
        found.append((table.label, rows.order_by()))
    return found


def count_purgeable(*, now: dt.datetime | None = None) -> dict[str, int]:
    """What a purge would delete, per table (the dry run)."""
    return {label: rows.count() for label, rows in purgeable(now=now)}


# What each table's rows count for in the reports, kept before a batch of them is deleted.
KEEP_COUNTS: dict[type[Model], Callable[[list], int]] = {
    Event: rollups.retire,
    Delivery: rollups.retire_deliveries,
    TrackingHit: rollups.retire_tracking,
}


def delete_in_batches(rows: QuerySet, *, batch_size: int, max_batches: int | None) -> Counter[str]:
    """Delete `rows` by primary key, `batch_size` at a time (each batch its own short transaction),
    at most `max_batches` batches; the counts per model include what cascaded."""
    deleted: Counter[str] = Counter()
    model: type[Model] = rows.model
    done = 0
    while max_batches is None or done < max_batches:
        keys = list(rows.values_list("pk", flat=True)[:batch_size])
        if not keys:
            break
        with transaction.atomic():
            keep = KEEP_COUNTS.get(model)
            if keep is not None:  # the reports keep counting what goes (events.rollups)
                keep(keys)
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
        deleted.update(
            delete_in_batches(rows, batch_size=int(settings.RETENTION_BATCH_SIZE), max_batches=max_batches)
        )
    return dict(deleted)
