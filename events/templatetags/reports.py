"""Filters of the report pages (events.admin_reports)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import template

from events.rollups import FAILURE_FIELDS

register = template.Library()


@register.filter
def seconds(value: float | None) -> str:
    """A latency for people: `-` when nothing finished, ms under a second."""
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


@register.filter
def failed(point: dict[str, int]) -> int:
    return sum(point[name] for name in FAILURE_FIELDS.values())


@register.filter
def local_step(moment: dt.datetime, period: Any) -> str:
    return period.label(moment)
