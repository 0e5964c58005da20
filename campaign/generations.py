"""Caches that every process drops within a second of a change made anywhere, whatever the cache
backend: a process-local per-process cache cannot be told, and a shared one may not be there.

A writer bumps a named generation in the database, in its own transaction; readers put the
generation in their cache keys and re-read the generations (one query for all of them) at most
every GENERATION_CHECK_SECONDS, so a stale entry is simply never read again. The cost is one
small query per process and interval, not one per request.
"""

from __future__ import annotations

import threading
import time

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F

from campaign.models import CacheGeneration

AUTH = "auth"

_lock = threading.Lock()
_known: dict[str, int] = {}
_checked_at = float("-inf")


def current(name: str) -> int:
    """The generation of `name`, as read from the database within the last check interval."""
    global _checked_at
    now = time.monotonic()
    if now - _checked_at >= settings.GENERATION_CHECK_SECONDS:
        values = dict(CacheGeneration.objects.values_list("name", "value"))
        with _lock:
            _known.clear()
            _known.update(values)
            _checked_at = now
    return _known.get(name, 0)


def bump(name: str) -> None:
    """Make every cached read of `name` stale, in every process, once the caller's transaction commits."""
    if CacheGeneration.objects.filter(name=name).update(value=F("value") + 1):
        return
    try:
        with transaction.atomic():
            CacheGeneration.objects.create(name=name, value=1)
    except IntegrityError:  # created by a concurrent bump meanwhile
        CacheGeneration.objects.filter(name=name).update(value=F("value") + 1)


def forget_checks() -> None:
    """Re-read the generations on next use (tests; and a process that knows it just bumped one)."""
    global _checked_at
    _checked_at = float("-inf")
