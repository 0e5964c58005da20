"""Enqueueing off the request path: the web process's background thread that hands accepted events
to the broker.

A POST commits its row and puts the id on an in-process queue (microseconds) instead of publishing
to the broker itself (a round trip and Celery's message building: most of an API call's time beyond
the INSERT). The thread publishes at once, and under load takes every id waiting, so that one task
carries a batch. Nothing can be lost here: the rows are committed with `enqueued_at` set, so if the
process dies with ids still queued, or the broker is down, the sweep enqueues them again
(EVENT_REENQUEUE_AFTER_SECONDS). At a normal exit the queue is flushed first.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading

from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)


class BackgroundEnqueuer:
    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def submit(self, event_ids: list[int]) -> None:
        self._ensure_running()
        for event_id in event_ids:
            self._queue.put(event_id)

    def _ensure_running(self) -> None:
        # Started lazily, and again in a forked child (gunicorn forks its workers after import).
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
                return
            if self._pid != os.getpid():
                self._queue = queue.SimpleQueue()
                atexit.register(self.flush)
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="event-enqueuer", daemon=True)
            self._thread.start()

    def _take_batch(self, *, block: bool) -> list[int]:
        try:
            ids = [self._queue.get(block=block)]
        except queue.Empty:
            return []
        while len(ids) < max(1, settings.EVENT_CLAIM_BATCH):
            try:
                ids.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return ids

    def _run(self) -> None:
        while True:
            self._publish(self._take_batch(block=True))
            connections.close_all()  # this thread's own connection, if enqueue_events' fallback opened one

    def _publish(self, event_ids: list[int]) -> None:
        from events.services import enqueue_events

        try:
            enqueue_events(event_ids)
        except Exception:  # enqueue_events only fails if even its fallback UPDATE fails: the sweep recovers
            logger.exception("could not enqueue events %s; the sweep will", event_ids)

    def flush(self) -> None:
        """Publish what is still queued, now (at exit, and for tests)."""
        while ids := self._take_batch(block=False):
            self._publish(ids)


background_enqueuer = BackgroundEnqueuer()
