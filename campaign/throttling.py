"""Attempts counted per source and minute, in the database (shared by every process): failed ones,
so that a guessing client is slowed down (the token endpoint counts wrong secrets per client id and
per address, the admin's login wrong passwords; successes are never counted), and costly ones with
a quota (proofs per user: `consume`). A window is one clock minute, purged by the beat."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from campaign.models import FailureWindow

WINDOW = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class Limit:
    key: str  # e.g. "token:client:<id>"
    per_minute: int


def _window(now: dt.datetime) -> dt.datetime:
    return now.replace(second=0, microsecond=0)


def retry_after(limits: list[Limit], *, now: dt.datetime | None = None) -> int | None:
    """Seconds until the caller may try again, if any of these sources used up its failures."""
    now = now or timezone.now()
    window = _window(now)
    counts = dict(
        FailureWindow.objects.filter(key__in=[limit.key for limit in limits], window=window).values_list(
            "key", "count"
        )
    )
    if any(counts.get(limit.key, 0) >= limit.per_minute for limit in limits):
        return max(1, int((window + WINDOW - now).total_seconds()) + 1)
    return None


def record_failure(limits: list[Limit], *, now: dt.datetime | None = None, amount: int = 1) -> None:
    window = _window(now or timezone.now())
    for limit in limits:
        if FailureWindow.objects.filter(key=limit.key, window=window).update(count=F("count") + amount):
            continue
        try:
            with transaction.atomic():
                FailureWindow.objects.create(key=limit.key, window=window, count=amount)
        except IntegrityError:  # another process opened the window meanwhile
            FailureWindow.objects.filter(key=limit.key, window=window).update(count=F("count") + amount)


class _OverLimit(Exception):
    pass


def consume(limit: Limit, *, amount: int = 1, now: dt.datetime | None = None) -> int | None:
    """Count `amount` uses of `limit.key` in this minute, unless that passes `limit.per_minute`:
    then count nothing and answer the seconds until the next window.

    The increment comes first, in a transaction: its row lock makes concurrent callers of every
    process queue, and each sees the total with its own share in it, so the limit cannot be
    overrun by a race; the increment is rolled back if it passes."""
    now = now or timezone.now()
    window = _window(now)
    try:
        with transaction.atomic():
            record_failure([limit], now=now, amount=amount)
            count = FailureWindow.objects.get(key=limit.key, window=window).count
            if count > limit.per_minute:
                raise _OverLimit
    except _OverLimit:
        return max(1, int((window + WINDOW - now).total_seconds()) + 1)
    return None


def purge_old_windows(*, now: dt.datetime | None = None) -> int:
    deleted, _ = FailureWindow.objects.filter(window__lt=_window(now or timezone.now())).delete()
    return deleted
