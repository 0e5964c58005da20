"""The dispatcher: the events table is the queue, and this hands its due events to Celery.

A POST only INSERTs its event, with `enqueued_at` empty: no broker on the request path. On
PostgreSQL a trigger on the events table NOTIFYs `events_due` when an INSERT commits (migration
0009_dispatch_notify); the dispatcher LISTENs and, at each wake-up, marks the due events that no
task carries yet (`enqueued_at`) and sends one `process_events` task per EVENT_CLAIM_BATCH of them,
once the marking commits. It also looks every DISPATCH_POLL_SECONDS whatever it heard: scheduled
events and retries come due without a notification, and a notification can be lost (a dropped
LISTEN connection, a dispatcher restarted). On SQLite (the demo) that poll is all there is.

Two dispatchers (one per worker) never hand out the same event: the marking skips locked rows.
A task lost after the marking (the broker lost it, or the worker died before running it) is the
sweep's (events.sweep): it hands those events out again after EVENT_REENQUEUE_AFTER_SECONDS.

Where it runs: a child process of each Celery worker (campaign.celery starts it with the worker and
again if it dies).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Q
from django.utils import timezone

from events import selectors, services
from events.models import Event

logger = logging.getLogger(__name__)

CHANNEL = "events_due"
STOP_CHECK_SECONDS = 1.0


def dispatch_due(
    *, now: dt.datetime | None = None, limit: int | None = None, include_stale: bool = False
) -> list[int]:
    """Mark up to `limit` due pending events that no task carries (and, for the sweep, those whose
    task was sent more than EVENT_REENQUEUE_AFTER_SECONDS ago and never ran) and send their tasks
    after the commit. A broker that refuses the tasks clears their mark again (enqueue_events)."""
    now = now or timezone.now()
    limit = limit or settings.DISPATCH_BATCH_LIMIT
    undispatched = Q(enqueued_at__isnull=True)
    if include_stale:
        undispatched |= Q(enqueued_at__lt=now - dt.timedelta(seconds=settings.EVENT_REENQUEUE_AFTER_SECONDS))
    with transaction.atomic():
        due = list(
            selectors.due_pending_events(now=now)
            .filter(undispatched)
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:limit]
        )
        if due:
            Event.objects.filter(pk__in=due).update(enqueued_at=now)
            transaction.on_commit(lambda: services.enqueue_events(due))
    return due


def dispatch_all() -> int:
    """Everything due now, in rounds of DISPATCH_BATCH_LIMIT (a backlog is handed out at once)."""
    total = 0
    while True:
        handed = len(dispatch_due())
        total += handed
        if handed < settings.DISPATCH_BATCH_LIMIT:
            return total


def wake() -> None:
    """Tell the dispatchers that events came due (a resumed message's), when the caller's transaction
    commits. On PostgreSQL a NOTIFY; elsewhere the dispatchers' poll finds them."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [CHANNEL])


class Listener:
    """A connection of its own that LISTENs to `events_due` (PostgreSQL), apart from the ORM's, so
    that a notification arriving while the dispatcher works waits in it instead of being missed."""

    def __init__(self) -> None:
        self.connection: Any = None

    def wait(self, timeout: float) -> bool:
        """Block until a notification or `timeout`; True if woken by a notification."""
        if connection.vendor != "postgresql":
            time.sleep(timeout)
            return False
        if self.connection is None:
            self.connection = connection.get_new_connection(connection.get_connection_params())
            self.connection.autocommit = True
            self.connection.execute(f"LISTEN {CHANNEL}")
            return True  # what was notified before LISTEN took effect is due now: look
        woken = False
        for _ in self.connection.notifies(timeout=timeout, stop_after=1):
            woken = True
        return woken

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            finally:
                self.connection = None


def run(*, should_stop: Callable[[], bool], poll: float | None = None) -> None:
    """The dispatcher's loop: hand out what is due, then wait for a notification or the poll, and
    again, until `should_stop` (asked at least every STOP_CHECK_SECONDS). An error (the database
    restarting) is logged and the loop goes on."""
    poll = poll if poll is not None else settings.DISPATCH_POLL_SECONDS
    listener = Listener()
    failures = 0
    woken, next_look = True, 0.0
    try:
        while not should_stop():
            try:
                if woken or time.monotonic() >= next_look:
                    dispatch_all()
                    next_look = time.monotonic() + poll
                woken = listener.wait(max(0.0, min(next_look - time.monotonic(), STOP_CHECK_SECONDS)))
                failures = 0
            except Exception:
                failures += 1
                logger.exception("the dispatcher failed; it tries again (the sweep covers meanwhile)")
                listener.close()
                close_old_connections()
                connection.close()
                time.sleep(min(0.1 * 2**failures, poll * 5))
                woken = True
    finally:
        listener.close()
        connection.close()
