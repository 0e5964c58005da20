"""The dispatcher: the events table is the queue, and this hands its due events to Celery.

A POST only INSERTs its event, with `enqueued_at` empty: no broker on the request path. The
dispatcher marks the due events that no task carries yet (`enqueued_at`) and sends one
`process_events` task per EVENT_CLAIM_BATCH of them, once the marking commits.

How it learns of new events: while events flow it simply looks again every
DISPATCH_BUSY_POLL_SECONDS (a few milliseconds of latency, no cost to the POSTs). After
DISPATCH_IDLE_AFTER_SECONDS without an event it goes to sleep: it says so in the database
(DispatcherSleep), looks one last time, and LISTENs; while it sleeps, PostgreSQL's trigger on the
events table NOTIFYs `events_due` when an INSERT commits (migration 0009_dispatch_notify), which
wakes it at once. The trigger does not notify while dispatchers are awake because a NOTIFY takes a
lock that serialises the commits of every notifying transaction: measured here with pgbench, one
INSERT per transaction fell from 8,800 to 840 commits/s at 32 clients when each one notified.
Asleep, the dispatcher still looks every DISPATCH_POLL_SECONDS: scheduled events and retries come
due without a notification, and an INSERT that checked the flag just before the dispatcher set it
sends none (a wake-up missed costs at most that poll). On SQLite (the demo) the polls are all.

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
from events.models import DispatcherSleep, Event

logger = logging.getLogger(__name__)

CHANNEL = "events_due"
STOP_CHECK_SECONDS = 1.0
# Longer than an INSERT takes from its trigger to its commit (the look that closes the gap).
SETTLE_SECONDS = 0.05


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


def say_asleep(*, until: dt.datetime | None) -> None:
    """Ask the INSERTs to NOTIFY until `until` (a dispatcher sleeps), or no more (None: awake)."""
    if connection.vendor != "postgresql":
        return
    if not DispatcherSleep.objects.filter(pk=1).update(asleep_until=until):
        flag = DispatcherSleep(pk=1, asleep_until=until)
        DispatcherSleep.objects.bulk_create([flag], ignore_conflicts=True)


def run(*, should_stop: Callable[[], bool], poll: float | None = None) -> None:
    """The dispatcher's loop until `should_stop` (asked at least every STOP_CHECK_SECONDS): hand out
    what is due; while events flow, look again every DISPATCH_BUSY_POLL_SECONDS; once idle, sleep
    until a NOTIFY or the poll (see the module's docstring). An error (the database restarting) is
    logged and the loop goes on."""
    poll = poll if poll is not None else settings.DISPATCH_POLL_SECONDS
    busy_poll = min(settings.DISPATCH_BUSY_POLL_SECONDS, poll)
    listener = Listener()
    failures = 0
    asleep = False
    last_handed = float("-inf")
    next_look = 0.0
    woken = True
    try:
        while not should_stop():
            try:
                now = time.monotonic()
                if woken or now >= next_look:
                    if dispatch_all():
                        last_handed = time.monotonic()
                    now = time.monotonic()
                    if now - last_handed < settings.DISPATCH_IDLE_AFTER_SECONDS:  # events flow
                        if asleep:
                            say_asleep(until=None)
                            asleep = False
                        next_look = now + busy_poll
                    else:
                        # Asleep: the INSERTs notify until this date, kept ahead at each look (a
                        # dead dispatcher's lapses). Just fallen asleep, one more look soon finds
                        # an INSERT that committed before it saw the date.
                        say_asleep(until=timezone.now() + dt.timedelta(seconds=3 * poll + 1))
                        next_look = now + (poll if asleep else SETTLE_SECONDS)
                        asleep = True
                wait = max(0.0, min(next_look - time.monotonic(), STOP_CHECK_SECONDS))
                woken = listener.wait(wait) if asleep else _pause(listener, wait)
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
        try:
            if asleep:
                say_asleep(until=None)
        except Exception:  # the date lapses by itself
            pass
        connection.close()


def _pause(listener: Listener, seconds: float) -> bool:
    """Awake, between two looks: no notification is asked for, so none is waited for."""
    time.sleep(seconds)
    return False
