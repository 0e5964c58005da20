"""Caches that every process drops within a second of a change made anywhere: each process keeps
its own (`ProcessCache`, a dict: no network round trip on the hot path), and no process can be told.

A writer bumps a named generation in the database, in its own transaction; readers tag their
entries with the generation they read before loading a value and re-read the generations (one
query for all of them) at most every GENERATION_CHECK_SECONDS, so a stale entry is simply never
read again. The cost is one small query per process and interval, not one per request.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Hashable
from typing import Any

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
    """Re-read the generations on next use, and empty this process's caches (tests, whose rollbacks
    take generations back; and a process that knows it just bumped one)."""
    global _checked_at
    _checked_at = float("-inf")
    for process_cache in list(_caches):
        process_cache.clear()


_caches: weakref.WeakSet[ProcessCache] = weakref.WeakSet()
ABSENT = object()  # what ProcessCache.get answers for no (live) entry; None may be a cached value


class ProcessCache:
    """A dict in this process whose entries live for the seconds they were put for, and are never
    read once the generation `name` has moved past the one they were loaded under. At most `max_entries`: when
    full, expired entries go, and if none had, all (a flood of distinct keys costs loads, never memory).

    Usage: `generation = cache.generation()` *before* reading the database, then `cache.get(key,
    generation)`, and on a miss `cache.put(key, value, generation=generation)`: a value read before
    a bump is then tagged with the generation it belongs to, and never served after the bump."""

    def __init__(self, name: str, *, max_entries: int = 10_000) -> None:
        self.name, self.max_entries = name, max_entries
        self._entries: dict[Hashable, tuple[int, float, Any]] = {}
        _caches.add(self)

    def generation(self) -> int:
        return current(self.name)

    def get(self, key: Hashable, generation: int) -> Any:
        entry = self._entries.get(key)
        if entry is None or entry[0] != generation or entry[1] <= time.monotonic():
            return ABSENT
        return entry[2]

    def put(self, key: Hashable, value: Any, *, generation: int, seconds: float) -> None:
        now = time.monotonic()
        if len(self._entries) >= self.max_entries:
            with _lock:
                live = {k: e for k, e in self._entries.items() if e[0] == generation and e[1] > now}
                self._entries = live if len(live) < self.max_entries else {}
        self._entries[key] = (generation, now + seconds, value)

    def clear(self) -> None:
        self._entries = {}
