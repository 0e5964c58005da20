"""The sweep (a periodic task): what no worker will do on its own.

It takes back events whose worker died (their lease ran out), expires events that waited past
their expiration, and enqueues due events whose task was lost or never sent (scheduled events,
retries, a broker that was down).
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from events import selectors, services
from events.models import Event
from events.transitions import transition_many

S = Event.Status


def recover(*, now: dt.datetime | None = None, limit: int | None = None) -> dict[str, int]:
    """The sweep's work: reclaim expired leases, expire what is past expiration, and enqueue due events."""
    now = now or timezone.now()
    limit = limit or settings.SWEEP_BATCH_SIZE
    reclaimed_ids = list(selectors.expired_leases(now=now).values_list("pk", flat=True)[:limit])
    reclaimed = (
        transition_many(
            Q(pk__in=reclaimed_ids, lease_expires_at__lt=now),
            to=S.PENDING,
            sources=[S.PROCESSING],
            reason="the worker's lease expired (worker crash or timeout)",
            lease_expires_at=None,
            enqueued_at=None,
            next_attempt_at=now,
        )
        if reclaimed_ids
        else []
    )
    expired_ids = list(selectors.expired_waiting_events(now=now).values_list("pk", flat=True)[:limit])
    expired = (
        transition_many(
            Q(pk__in=expired_ids, expiration_at__lt=now),
            to=S.TOO_OLD,
            sources=[S.PENDING, S.PAUSED],
            reason="expired before it could be sent",
        )
        if expired_ids
        else []
    )
    stale = now - dt.timedelta(seconds=settings.EVENT_REENQUEUE_AFTER_SECONDS)
    with transaction.atomic():
        due = list(
            selectors.due_pending_events(now=now)
            .filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=stale))
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:limit]
        )
        if due:
            Event.objects.filter(pk__in=due).update(enqueued_at=now)
            transaction.on_commit(lambda: services.enqueue_events(due))
    return {"reclaimed": len(reclaimed), "expired": len(expired), "enqueued": len(due)}
