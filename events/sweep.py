"""The sweep (a periodic task): what no worker will do on its own.

It takes back events whose worker died (their lease ran out), expires events that waited past
their expiration, and hands out due events whose task was lost or never sent (a broker that was
down, a dispatcher that was not running): the dispatcher's own work (events.dispatch), plus the
events whose task was sent long ago and never ran.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from events import reasons, selectors
from events.dispatch import dispatch_due
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
            code=reasons.LEASE_EXPIRED,
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
            code=reasons.EXPIRED,
        )
        if expired_ids
        else []
    )
    due = dispatch_due(now=now, limit=limit, include_stale=True)
    return {"reclaimed": len(reclaimed), "expired": len(expired), "enqueued": len(due)}
