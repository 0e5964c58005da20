"""Reports: the counts of an organization, a message or a message version over a period, read from
the hourly rollups (events.rollups) alone, so that a report costs the same whatever the history
holds: a 30-day report reads at most 720 rows per message version.

Periods are whole hours or days in the organization's time zone (`Organization.time_zone`, else
TIME_ZONE). Rollups are UTC hours: in a zone half an hour off UTC a day starts half an hour late.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.conf import settings
from django.db.models import QuerySet, Sum
from django.utils import timezone

from campaign.models import Organization
from events.models import LATENCY_BUCKETS, HourlyRollup
from events.rollups import COUNT_FIELDS, FAILURE_FIELDS, hour_of
from messages import tracking

PERIODS = {"24h": dt.timedelta(hours=24), "7d": dt.timedelta(days=7), "30d": dt.timedelta(days=30)}
PERIOD_CHOICES = [
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("custom", "Custom dates"),
]
MAX_CUSTOM_DAYS = 366
HOURLY_UP_TO = dt.timedelta(days=7)  # longer periods are charted by day
FAILURE_LABELS = {field: status for status, field in FAILURE_FIELDS.items()}


def time_zone_of(organization: Organization | None) -> zoneinfo.ZoneInfo:
    """The time zone an organization's reports are in: its own, else the installation's TIME_ZONE."""
    return zoneinfo.ZoneInfo(
        (organization.time_zone if organization is not None else "") or settings.TIME_ZONE
    )


@dataclass(frozen=True)
class Period:
    start: dt.datetime
    end: dt.datetime
    by_day: bool
    time_zone: zoneinfo.ZoneInfo

    def steps(self) -> list[dt.datetime]:
        """The starts of the chart's points: every hour, or every day in the time zone."""
        points, moment = [], self.start
        while moment < self.end:
            points.append(moment)
            if self.by_day:
                local = moment.astimezone(self.time_zone).date() + dt.timedelta(days=1)
                moment = dt.datetime.combine(local, dt.time(), self.time_zone)
            else:
                moment = moment + dt.timedelta(hours=1)
        return points

    def step_of(self, hour: dt.datetime) -> dt.datetime:
        if not self.by_day:
            return hour
        return dt.datetime.combine(hour.astimezone(self.time_zone).date(), dt.time(), self.time_zone)

    def label(self, moment: dt.datetime) -> str:
        local = moment.astimezone(self.time_zone)
        return f"{local:%Y-%m-%d}" if self.by_day else f"{local:%Y-%m-%d %H:00}"

    def short_label(self, moment: dt.datetime) -> str:
        local = moment.astimezone(self.time_zone)
        return f"{local:%b %d}" if self.by_day else f"{local:%b %d %H:00}"


class PeriodForm(forms.Form):
    period = forms.ChoiceField(choices=PERIOD_CHOICES, required=False, initial="7d")
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if (data.get("period") or "7d") != "custom":
            return data
        start, end = data.get("start"), data.get("end")
        if start is None:
            self.add_error("start", "Choose the first day of the period.")
        if end is None:
            self.add_error("end", "Choose the last day of the period.")
        if start and end and end < start:
            self.add_error("end", "The last day comes before the first.")
        elif start and end and (end - start).days + 1 > MAX_CUSTOM_DAYS:
            self.add_error("end", f"A period has at most {MAX_CUSTOM_DAYS} days.")
        return data

    def period_in(self, time_zone: zoneinfo.ZoneInfo, *, now: dt.datetime | None = None) -> Period:
        """The chosen period (the form is valid); the last 7 days when nothing was chosen."""
        now = now or timezone.now()
        data = self.cleaned_data
        choice = data.get("period") or "7d"
        if choice == "custom":
            start = dt.datetime.combine(data["start"], dt.time(), time_zone)
            end = dt.datetime.combine(data["end"] + dt.timedelta(days=1), dt.time(), time_zone)
        elif choice == "24h":
            end = hour_of(now) + dt.timedelta(hours=1)
            start = end - PERIODS[choice]
        else:  # whole days, today included
            end = dt.datetime.combine(
                now.astimezone(time_zone).date() + dt.timedelta(days=1), dt.time(), time_zone
            )
            start = end - PERIODS[choice]
            start = dt.datetime.combine(start.date(), dt.time(), time_zone)
        return Period(start=start, end=end, by_day=end - start > HOURLY_UP_TO, time_zone=time_zone)


@dataclass
class Report:
    period: Period
    totals: dict[str, int]
    series: list[tuple[dt.datetime, dict[str, int]]]
    latency: dict[str, float | None]
    reasons: dict[str, list[tuple[str, int]]]
    rows_read: int
    breakdown: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(self.totals[f] for f in FAILURE_FIELDS.values())

    def rate(self, part: str, whole: str) -> float | None:
        return 100 * self.totals[part] / self.totals[whole] if self.totals[whole] else None


def build(rows: QuerySet[HourlyRollup], period: Period) -> Report:
    """The report of these rollup rows over the period: totals, one point per step, latency
    percentiles from the summed histogram buckets, the most frequent failure reasons."""
    in_period = rows.filter(hour__gte=period.start, hour__lt=period.end).order_by()
    series: dict[dt.datetime, dict[str, int]] = {
        step: dict.fromkeys(COUNT_FIELDS, 0) for step in period.steps()
    }
    totals = dict.fromkeys(COUNT_FIELDS, 0)
    buckets = [0] * (len(LATENCY_BUCKETS) + 1)
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    read = 0
    for row in in_period.values("hour", "latency_buckets", "failure_reasons", *COUNT_FIELDS).iterator():
        read += 1
        point = series.setdefault(period.step_of(row["hour"]), dict.fromkeys(COUNT_FIELDS, 0))
        for name in COUNT_FIELDS:
            point[name] += row[name]
            totals[name] += row[name]
        for i, n in enumerate(row["latency_buckets"][: len(buckets)]):
            buckets[i] += n
        for status, counted in (row["failure_reasons"] or {}).items():
            for reason, n in counted:
                reasons[status][reason] += n
    return Report(
        period=period,
        totals=totals,
        series=sorted(series.items()),
        latency={f"p{q}": quantile(buckets, q / 100) for q in (50, 95, 99)},
        reasons={status: counter.most_common(10) for status, counter in sorted(reasons.items())},
        rows_read=read,
    )


def quantile(buckets: list[int], q: float) -> float | None:
    """The q-quantile (seconds) of a histogram of counts per LATENCY_BUCKETS bucket, interpolated
    within its bucket as Prometheus' histogram_quantile does; past the last bound, that bound."""
    total = sum(buckets)
    if not total:
        return None
    rank, seen, lower = q * total, 0, 0.0
    for i, n in enumerate(buckets):
        if i == len(LATENCY_BUCKETS):
            return float(LATENCY_BUCKETS[-1])
        upper = float(LATENCY_BUCKETS[i])
        if n and seen + n >= rank:
            return lower + (upper - lower) * (rank - seen) / n
        seen, lower = seen + n, upper
    return float(LATENCY_BUCKETS[-1])


def breakdown(rows: QuerySet[HourlyRollup], period: Period, by: str) -> list[dict[str, Any]]:
    """The period's totals per `by` (configuration or version), biggest first."""
    in_period = rows.filter(hour__gte=period.start, hour__lt=period.end).order_by()
    grouped = in_period.values(by).annotate(**{name: Sum(name) for name in COUNT_FIELDS})
    return sorted(grouped, key=lambda g: (-g["received"], str(g[by])))


# --- Hot clicks ---------------------------------------------------------------------------------


def hot_clicks(version_ids: Iterable[int], period: Period, *, limit: int = 20) -> list[tracking.LinkClicks]:
    """The versions' links ranked by human clicks in the period (the tracking rows, read by the
    index on version and time: the clicks of the period, not the history)."""
    ids = list(version_ids)
    if not ids:
        return []
    return tracking.link_clicks(version_ids=ids, since=period.start, until=period.end, limit=limit)


# --- Charts -------------------------------------------------------------------------------------

CHART_WIDTH, CHART_HEIGHT, CHART_PAD = 720, 180, 32
COLORS = ("#2b6cb0", "#2f855a", "#c05621", "#b83280", "#6b46c1")


@dataclass
class Line:
    label: str
    color: str
    points: str
    total: int


@dataclass
class Chart:
    title: str
    lines: list[Line]
    top: int
    ticks: list[tuple[float, str, str]]  # x, label, text-anchor
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT
    pad: int = CHART_PAD

    @property
    def plot_bottom(self) -> int:
        return self.height - self.pad

    @property
    def plot_right(self) -> int:
        return self.width - 8


def chart(report: Report, title: str, fields: list[tuple[str, str]]) -> Chart:
    """One SVG line chart (drawn by the template) of these counts over the report's steps."""
    values = [[point[name] for _, point in report.series] for name, _ in fields]
    top = max([1, *(v for line in values for v in line)])
    steps = max(len(report.series) - 1, 1)
    inner_w, inner_h = CHART_WIDTH - CHART_PAD - 8, CHART_HEIGHT - 2 * CHART_PAD

    def x(i: int) -> float:
        return round(CHART_PAD + inner_w * i / steps, 1)

    def y(v: int) -> float:
        return round(CHART_PAD + inner_h * (1 - v / top), 1)

    lines = [
        Line(
            label=label,
            color=COLORS[n % len(COLORS)],
            points=" ".join(f"{x(i)},{y(v)}" for i, v in enumerate(line)),
            total=sum(line),
        )
        for n, ((_, label), line) in enumerate(zip(fields, values, strict=True))
    ]
    every = max(1, len(report.series) // 6)
    ticks = [
        (x(i), report.period.short_label(moment), "start" if i == 0 else "middle")
        for i, (moment, _) in enumerate(report.series)
        if i % every == 0
    ]
    return Chart(title=title, lines=lines, top=top, ticks=ticks)


def charts(report: Report) -> list[Chart]:
    return [
        chart(report, "Events", [("received", "received"), ("processed", "processed")]),
        chart(
            report,
            "Deliveries",
            [
                ("sent", "sent"),
                ("delivered", "delivered"),
                ("bounced_hard", "hard bounces"),
                ("bounced_soft", "soft bounces"),
            ],
        ),
        chart(
            report,
            "Opens and clicks",
            [
                ("opened", "opened"),
                ("opened_unique", "unique opens"),
                ("clicked", "clicked"),
                ("clicked_unique", "unique clicks"),
            ],
        ),
    ]
