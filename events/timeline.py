"""An event's story, step by step (the API's `.../EVTname/PKEY/timeline` and the event's admin page).

Read from what the event's way already writes, nothing more per event: its status history (each
move with its stable reason code, events.reasons; a claim with its worker; the move that ended an
attempt with the version the worker routed the event to), its deliveries (the provider's answer, the
Message-ID), and their opens and clicks. No `ctx` value and no free-text reason is shown (a reason
may quote the event's data): steps, codes and metadata only; a provider's answer with its
addresses masked.

Steps, in order:

* `received`: the POST was accepted (with its `scheduled` and `expiration` dates, if any);
* `statusChanged`: from -> to, with its `code` (the claim's carries the `worker` and the attempt);
* `routed`: the message version an attempt was routed to;
* `delivery`: a send, with the provider's answer (`outcome`, `providerResponse`, `durationMs`,
  `messageId`: the Message-ID);
* `attempt`: an attempt's end: which worker, when it started, how long it took;
* `opened` / `clicked`: a tracking hit (a click names its link by index, not its URL);
* `providerEvent`: what the provider said later (messages.provider_history): an email service
  provider's webhook (a bounce, a complaint...) or an SMS provider's delivery receipt: `kind`,
  `quarantined`, the provider's `description` with its addresses masked, and a receipt's own
  `status` and `errorCode`.

At most MAX_STEPS steps; `truncated` says when there were more.
"""

from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass
from typing import Any

from campaign.privacy import mask_addresses
from events import reasons
from events.models import Event, EventStatusChange
from messages.models import Delivery, TrackingHit
from messages.provider_history import provider_history

MAX_STEPS = 500
S = Event.Status


def timestamp(at: dt.datetime) -> str:
    """ISO 8601 in UTC with milliseconds, as the API writes dates: 2026-11-29T21:53:51.123Z."""
    return at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Attempt:
    number: int
    claim: EventStatusChange


def event_timeline(event: Event, *, max_steps: int = MAX_STEPS) -> dict[str, Any]:
    """The event's steps (see the module), at most `max_steps`, and whether some were left off."""
    history = list(
        EventStatusChange.objects.filter(event_id=event.pk)
        .order_by("created_at", "id")
        .only("from_status", "to_status", "code", "worker", "version_number", "created_at")[: max_steps + 1]
    )
    deliveries = list(
        Delivery.objects.filter(event_link__event_id=event.pk)
        .order_by("created_at", "id")
        .only(
            "channel",
            "outcome",
            "provider_message_id",
            "provider_response",
            "duration_ms",
            "created_at",
            "version__number",
        )
        .select_related("version")[: max_steps + 1]
    )
    hits = list(
        TrackingHit.objects.filter(delivery__in=[d.pk for d in deliveries])
        .order_by("created_at", "id")
        .only("kind", "link_index", "first", "automated", "created_at", "delivery_id")[: max_steps + 1]
    )
    provider_reports = provider_history(deliveries[:max_steps], limit=max_steps)
    steps: list[dict[str, Any]] = [
        {
            "step": "received",
            "at": timestamp(event.created_at),
            "scheduled": timestamp(event.scheduled_at) if event.scheduled_at else None,
            "expiration": timestamp(event.expiration_at) if event.expiration_at else None,
        }
    ]
    # Each send belongs to the attempt whose claim came last before it (it is recorded with the
    # attempt's end, in the same statement, a moment after that move's row).
    claimed_at = [c.created_at for c in history if c.to_status == S.PROCESSING]
    sends: dict[int, list[Delivery]] = {}
    for delivery in deliveries:
        number = bisect.bisect_right(claimed_at, delivery.created_at)
        # One dated before the first claim (clocks of two machines): the first attempt's.
        sends.setdefault(max(number, 1) if claimed_at else 0, []).append(delivery)
    attempt: _Attempt | None = None
    for change in history:
        if change.to_status == S.PROCESSING:
            attempt = _Attempt(attempt.number + 1 if attempt else 1, change)
            steps.append(_status_step(change, attempt))
            continue
        ends_attempt = change.from_status == S.PROCESSING and attempt is not None
        if ends_attempt and attempt is not None:
            if change.version_number is not None:
                steps.append(
                    {
                        "step": "routed",
                        "at": timestamp(attempt.claim.created_at),
                        "attempt": attempt.number,
                        "version": change.version_number,
                    }
                )
            steps += [_delivery_step(d, attempt.number) for d in sends.pop(attempt.number, [])]
            steps.append(_attempt_step(attempt, change))
        steps.append(_status_step(change, attempt if ends_attempt else None))
    for number in sorted(sends):  # sends of an attempt not ended yet (or whose end is beyond the bound)
        steps += [_delivery_step(d, number or None) for d in sends[number]]
    for hit in hits:
        step: dict[str, Any] = {
            "step": "opened" if hit.kind == TrackingHit.Kind.OPEN else "clicked",
            "at": timestamp(hit.created_at),
            "first": hit.first,
            "automated": hit.automated,
        }
        if hit.kind == TrackingHit.Kind.CLICK:
            step["link"] = hit.link_index
        steps.append(step)
    for report in provider_reports.reports:
        steps.append(
            {
                "step": "providerEvent",
                "at": timestamp(report.received_at),
                "occurredAt": timestamp(report.occurred_at) if report.occurred_at else None,
                "provider": report.provider,
                "kind": report.kind,
                "quarantined": report.quarantined,
                "description": mask_addresses(report.description),
                "status": report.status or None,
                "errorCode": report.error_code or None,
            }
        )
    truncated = (
        len(steps) > max_steps
        or len(history) > max_steps
        or len(deliveries) > max_steps
        or len(hits) > max_steps
        or provider_reports.truncated
    )
    return {
        "PKey": event.pkey,
        "type": event.configuration.event_id,
        "status": event.status,
        "steps": steps[:max_steps],
        "truncated": truncated,
    }


def _status_step(change: EventStatusChange, attempt: _Attempt | None) -> dict[str, Any]:
    step: dict[str, Any] = {
        "step": "statusChanged",
        "at": timestamp(change.created_at),
        "from": change.from_status or None,
        "to": change.to_status,
        "code": change.code or None,  # None: a move recorded before reason codes existed
    }
    if attempt is not None:
        step["attempt"] = attempt.number
    if change.code == reasons.CLAIMED or change.worker:
        step["worker"] = change.worker or None
    return step


def _attempt_step(attempt: _Attempt, end: EventStatusChange) -> dict[str, Any]:
    duration = end.created_at - attempt.claim.created_at
    return {
        "step": "attempt",
        "at": timestamp(end.created_at),
        "attempt": attempt.number,
        "worker": attempt.claim.worker or None,
        "startedAt": timestamp(attempt.claim.created_at),
        "durationMs": max(0, int(duration.total_seconds() * 1000)),
        "code": end.code or None,
    }


def _delivery_step(delivery: Delivery, attempt: int | None) -> dict[str, Any]:
    step: dict[str, Any] = {
        "step": "delivery",
        "at": timestamp(delivery.created_at),
        "outcome": delivery.outcome,
        "messageId": delivery.provider_message_id or None,
        "providerResponse": mask_addresses(delivery.provider_response),
        "durationMs": delivery.duration_ms,
        "version": delivery.version.number if delivery.version is not None else None,
    }
    if attempt is not None:
        step["attempt"] = attempt
    return step
