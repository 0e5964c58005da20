"""Claims and leases: which worker holds an event, and for how long.

A claim is a conditional UPDATE (`pending` -> `processing`) that sets a lease, so a duplicate task
or a second worker finds nothing to do. The lease value is the token every later write checks;
only an expired lease is ever taken over (by the sweep, events.sweep).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.db import OperationalError, close_old_connections, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from events import reasons
from events.models import Event
from events.statements import claim_sql
from events.transitions import check_move, transition, transition_many
from messages import services as message_services
from messages.channels import channel_names, legacy_send_seconds

S = Event.Status
T = TypeVar("T")


class LeaseLost(Exception):
    """Another worker took the event over (our lease ran out): stop without sending."""


@dataclass
class Claim:
    """This worker's hold on one event: the lease value is the token every later write checks."""

    event_id: int
    lease: dt.datetime
    event: Event | None = None

    def renew(self, *, send_seconds: float | None = None) -> None:
        """Extend the lease just before sending unless plenty of it is left (`lease_is_ample`, with
        the longest this event's send can take), so that a slow step (or the events before this one
        in a batch) cannot let it run out during the send and cause a double send. While the lease
        runs nobody else can hold the event: only an expired lease is ever reclaimed."""
        if lease_is_ample(self.lease, now=timezone.now(), send_seconds=send_seconds):
            return
        kept, renewed = renew_leases([self.event_id], self.lease)
        if not kept:
            raise LeaseLost
        self.lease = renewed


def worker_name() -> str:
    """This process, as the timeline names a claim's worker: host:pid (read once per process)."""
    return _worker_name(os.getpid())


@functools.cache
def _worker_name(pid: int) -> str:
    return f"{socket.gethostname()[:80]}:{pid}"


def lease_is_ample(lease: dt.datetime, *, now: dt.datetime, send_seconds: float | None = None) -> bool:
    """More than half the lease is left, and more than the longest a send can take: `send_seconds`
    (the channel's backend's `max_send_seconds`, messages.services.longest_send), else the longest
    of any channel's (`longest_send`), with the render's bound before it."""
    left = (lease - now).total_seconds()
    send = longest_send() if send_seconds is None else send_seconds
    render = float(getattr(settings, "RENDER_TIMEOUT_SECONDS", 0) or 0)
    return left > settings.EVENT_LEASE_SECONDS / 2 and left > send + render


def longest_send() -> float:
    """The longest one send of any channel can take (its settings' backend), for a batch's events
    whose channel is not known yet; each event's own is checked again just before its send."""
    try:
        return max((message_services.longest_send(name) for name in channel_names()), default=0.0)
    except Exception:  # noqa: BLE001 - a backend that cannot be built fails at its send, not here
        return legacy_send_seconds()


def claim(event_id: int, *, now: dt.datetime) -> dt.datetime | None:
    """Take the event for this worker; return the lease (our claim's token) or None if not ours."""
    lease = now + dt.timedelta(seconds=settings.EVENT_LEASE_SECONDS)
    won = transition(
        event_id,
        to=S.PROCESSING,
        sources=[S.PENDING],
        code=reasons.CLAIMED,
        worker=worker_name(),
        extra=Q(next_attempt_at__lte=now),
        lease_expires_at=lease,
        attempts=F("attempts") + 1,
        enqueued_at=None,
    )
    return lease if won else None


def claim_due(event_ids: list[int], *, now: dt.datetime, limit: int) -> tuple[list[int], dt.datetime]:
    """Claim these events and, when a backlog waits, other due events up to `limit`: a burst costs
    one claim per batch instead of one per event. The backlog is the due events no task carries
    yet (`enqueued_at` empty), and those handed to a task more than EVENT_BACKLOG_TAKEOVER_SECONDS
    ago: a task that starts promptly keeps its events (the workers of several machines share a
    burst), one queued behind busy processes loses them to a task that runs. Returns the claimed
    ids (the task's own events first, in their order) and their lease."""
    lease = now + dt.timedelta(seconds=settings.EVENT_LEASE_SECONDS)
    claimed = _claim(event_ids[:limit], now=now, lease=lease) if event_ids else []
    if len(claimed) < limit:
        # The backlog, oldest due first; when a batch already took these events and nothing else
        # waits, this is all the task costs.
        claimed += _claim(None, now=now, lease=lease, limit=limit - len(claimed), besides=event_ids)
    order = {pk: position for position, pk in enumerate(event_ids)}
    return sorted(claimed, key=lambda pk: (order.get(pk, len(order)), pk)), lease


def _claim(
    event_ids: list[int] | None,
    *,
    now: dt.datetime,
    lease: dt.datetime,
    limit: int = 0,
    besides: Sequence[int] = (),
) -> list[int]:
    """`pending` and due -> `processing` with the lease: these events, or else (None) the `limit`
    oldest due ones; one statement on PostgreSQL."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        if event_ids is None:
            carried_by_none = Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=_handed_before(now))
            due = Event.objects.filter(carried_by_none, status=S.PENDING, next_attempt_at__lte=now).exclude(
                pk__in=besides
            )
            event_ids = list(due.order_by("next_attempt_at", "pk").values_list("pk", flat=True)[:limit])
            if not event_ids:
                return []
        fields: dict[str, Any] = {
            "lease_expires_at": lease,
            "attempts": F("attempts") + 1,
            "enqueued_at": None,
        }
        return transition_many(
            Q(pk__in=event_ids, next_attempt_at__lte=now),
            to=S.PROCESSING,
            sources=[S.PENDING],
            code=reasons.CLAIMED,
            worker=worker_name(),
            **fields,
        )
    check_move([S.PENDING], S.PROCESSING)
    sql, params = claim_sql(
        event_ids,
        source=S.PENDING,
        to=S.PROCESSING,
        now=now,
        lease=lease,
        limit=limit,
        handed_before=_handed_before(now),
        worker=worker_name(),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [pk for (pk,) in cursor.fetchall()]


def _handed_before(now: dt.datetime) -> dt.datetime:
    return now - dt.timedelta(seconds=settings.EVENT_BACKLOG_TAKEOVER_SECONDS)


def renew_leases(event_ids: list[int], lease: dt.datetime) -> tuple[set[int], dt.datetime]:
    """Extend the lease of those events that are still ours (held with `lease`); return them and
    the new lease. One event before its send, or a batch's waiting events together."""
    renewed = timezone.now() + dt.timedelta(seconds=settings.EVENT_LEASE_SECONDS)
    with transaction.atomic():
        ours = Event.objects.filter(pk__in=event_ids, status=S.PROCESSING, lease_expires_at=lease)
        kept = set(ours.select_for_update().values_list("pk", flat=True))
        Event.objects.filter(pk__in=kept).update(lease_expires_at=renewed)
    return kept, renewed


def release_unprocessed(event_ids: list[int], *, lease: dt.datetime, reason: str) -> list[int]:
    """Hand events this worker claimed but never started back to `pending`, as they were before the
    claim (the attempt not counted) and due now, for the sweep to hand out again at once."""
    return transition_many(
        Q(pk__in=event_ids, lease_expires_at=lease),
        to=S.PENDING,
        sources=[S.PROCESSING],
        reason=reason,
        code=reasons.RELEASED,
        attempts=F("attempts") - 1,
        lease_expires_at=None,
        enqueued_at=None,
        next_attempt_at=timezone.now(),
    )


def with_database_retries(operation: Callable[[], T], *, attempts: int = 8) -> T:
    """Ride out transient database errors (SQLite's lock, a dropped connection) around a write
    that must happen: a claim taken, an email already sent that has to be recorded."""
    for attempt in range(attempts):
        try:
            return operation()
        except OperationalError:
            if attempt == attempts - 1:
                raise
            close_old_connections()
            time.sleep(min(0.05 * 2**attempt, 2.0))
    raise AssertionError("unreachable")
