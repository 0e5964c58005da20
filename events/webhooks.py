"""Status webhooks: an organization's endpoints get signed notifications of what happened to its
events (final statuses, bounces, opens, clicks, unsubscribes), at least once.

The outbox. Nothing is added to the workers' path (their grouped recording statement stays as it
is): a scanner (`store_notifications`, on the beat every WEBHOOK_INTERVAL_SECONDS) reads, for each
kind, the rows changed since its persisted cursor (events by `updated_at`, deliveries, tracking hits
and unsubscriptions by `created_at`, each on an index), minus WEBHOOK_SCAN_GRACE_SECONDS for the rows
committed later than the time they carry, and stores one notification per (endpoint, kind, source)
(a unique constraint: the grace re-reads change nothing). A final status exists only in a committed
row, so its notification is stored whatever became of the worker that recorded it.

The sender (`deliver_due`) claims due notifications (a lease in `next_attempt_at`), POSTs them
outside any transaction, then records the attempt. A sender that dies between the POST and the
record leaves the claim to run out: the notification goes again, with the same `webhook-id` and
body (receivers deduplicate by it). Failures are retried after WEBHOOK_RETRY_FIRST_SECONDS, each
retry twice as late, for WEBHOOK_RETRY_WINDOW_SECONDS (a day) in all; then the notification is
`failed` (an administrator may replay it). WEBHOOK_DISABLE_AFTER_FAILURES failed attempts in a row
disable the endpoint (its notifications wait; nothing new is stored for it while disabled).

Signatures follow Standard Webhooks: `webhook-signature: v1,<base64 HMAC-SHA256 of
"{webhook-id}.{webhook-timestamp}.{body}">` keyed by the base64 part of the `whsec_...` secret.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F, OuterRef, Subquery
from django.utils import timezone

from campaign import encryption
from campaign.models import Organization
from events import webhook_http
from events.models import (
    FINAL_STATUSES,
    Event,
    EventStatusChange,
    Unsubscription,
    WebhookAttempt,
    WebhookCursor,
    WebhookEndpoint,
    WebhookNotification,
    format_event_id,
)
from messages.models import Delivery, ProviderEvent, TrackingHit

Kind = WebhookNotification.Kind
State = WebhookNotification.State
SECRET_PREFIX = "whsec_"
# Which endpoint flag asks for which kind.
WANTS: dict[str, str] = {
    Kind.STATUS: "final_statuses",
    Kind.BOUNCE: "bounces",
    Kind.OPEN: "opens",
    Kind.CLICK: "clicks",
    Kind.UNSUBSCRIBE: "unsubscribes",
}
CHUNK = 2000
RUN_SECONDS = 30.0  # a beat run sends for this long at most; the next run goes on


# --- signing ----------------------------------------------------------------------------------


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def signature(*, secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header's value (Standard Webhooks, version 1)."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def body_of(notification: WebhookNotification) -> bytes:
    """The same bytes at every attempt (the payload is stored; keys sorted, no spaces)."""
    return json.dumps(notification.payload, sort_keys=True, separators=(",", ":")).encode()


def headers_for(*, secret: str, webhook_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = int(now if now is not None else time.time())
    return {
        "Content-Type": "application/json",
        "User-Agent": "campaign-webhooks/1",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret=secret, webhook_id=webhook_id, timestamp=timestamp, body=body),
    }


# --- retries ----------------------------------------------------------------------------------


def retry_delays(*, first: float | None = None, window: float | None = None) -> list[float]:
    """Seconds from each failed attempt to the next: `first`, twice that, ..., the last one cut so
    that the retries end `window` seconds after the first attempt (a day by default)."""
    first = settings.WEBHOOK_RETRY_FIRST_SECONDS if first is None else first
    window = settings.WEBHOOK_RETRY_WINDOW_SECONDS if window is None else window
    delays: list[float] = []
    total, delay = 0.0, max(first, 0.001)
    while total < window:
        step = min(delay, window - total)
        delays.append(step)
        total += step
        delay *= 2
    return delays


# --- endpoints --------------------------------------------------------------------------------


def check_endpoint(*, organization: Organization, url: str, endpoint: WebhookEndpoint | None = None) -> None:
    """ValidationError (by field) for a URL the sender could not reach, or one endpoint too many."""
    try:
        webhook_http.check(url)
    except webhook_http.TargetRefused as refused:
        raise ValidationError({"url": str(refused)}) from None
    others = WebhookEndpoint.objects.filter(organization=organization)
    if endpoint is not None and endpoint.pk:
        others = others.exclude(pk=endpoint.pk)
    if others.count() >= settings.WEBHOOK_MAX_ENDPOINTS:
        raise ValidationError(
            f"An organization has at most {settings.WEBHOOK_MAX_ENDPOINTS} webhook endpoints."
        )


def create_endpoint(*, endpoint: WebhookEndpoint) -> str:
    """Save a new endpoint (its fields set, checked) with a new secret; the secret, to show once."""
    secret = new_secret()
    endpoint.secret_encrypted = encryption.encrypt(secret)
    endpoint.save()
    return secret


def secret_of(endpoint: WebhookEndpoint) -> str:
    return encryption.decrypt(endpoint.secret_encrypted)


def reencrypt_secrets() -> int:
    """Every endpoint's secret encrypted again under the first key of ENCRYPTION_KEYS (after a new
    key was put first); InvalidToken if one cannot be opened by any key. Returns how many."""
    endpoints = list(WebhookEndpoint.objects.only("pk", "secret_encrypted").order_by("pk"))
    rotated = [(e.pk, encryption.rotate(e.secret_encrypted)) for e in endpoints]  # all open, or none written
    with transaction.atomic():
        for pk, token in rotated:
            WebhookEndpoint.objects.filter(pk=pk).update(secret_encrypted=token)
    return len(rotated)


def enable(*, endpoint: WebhookEndpoint) -> None:
    """Back on after a disable: the run of failures starts again from zero."""
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        enabled=True, disabled_at=None, disabled_reason="", failures_in_a_row=0
    )


def replay(*, notification: WebhookNotification, now: dt.datetime | None = None) -> None:
    """Send it again soon, with the same id and body, whatever became of it (a fresh schedule)."""
    now = now or timezone.now()
    WebhookNotification.objects.filter(pk=notification.pk).update(
        state=State.PENDING, attempts=0, next_attempt_at=now, delivered_at=None
    )


# --- the outbox: storing notifications -------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One thing that happened: the row it is, its organization, when, and what to tell."""

    id: int
    organization_id: int
    at: dt.datetime
    data: dict[str, Any]


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _event_data(name: str, pkey: str) -> dict[str, Any]:
    return {"eventId": format_event_id(name), "PKey": pkey}


def _statuses(organizations: list[int], since: dt.datetime) -> Iterator[Source]:
    # The reason code of the move to the final status: written in the same transaction as the status.
    move = EventStatusChange.objects.filter(event_id=OuterRef("pk"), to_status=OuterRef("status"))
    rows = (
        Event.objects.filter(updated_at__gte=since, status__in=list(FINAL_STATUSES))
        .filter(organization_id__in=organizations)
        .order_by()
        .annotate(reason_code=Subquery(move.order_by("-created_at", "-id").values("code")[:1]))
        .values_list(
            "pk", "organization_id", "updated_at", "configuration__name", "pkey", "status", "reason_code"
        )
    )
    for pk, organization_id, at, name, pkey, status, code in rows.iterator(chunk_size=CHUNK):
        data = {**_event_data(name, pkey), "status": status, "reasonCode": code or None}
        yield Source(pk, organization_id, at, data)


EVENT_OF_DELIVERY = "event_link__event__"


def _bounces(organizations: list[int], since: dt.datetime) -> Iterator[Source]:
    rows = (
        Delivery.objects.filter(organization_id__in=organizations, created_at__gte=since)
        .filter(outcome=Delivery.Outcome.PERMANENT_FAILURE, is_proof=False, event_link__isnull=False)
        .order_by()
        .values_list(
            "pk",
            "organization_id",
            "created_at",
            f"{EVENT_OF_DELIVERY}configuration__name",
            f"{EVENT_OF_DELIVERY}pkey",
            "channel",
            "provider_response",
        )
    )
    for pk, organization_id, at, name, pkey, channel, response in rows.iterator(chunk_size=CHUNK):
        data = {
            **_event_data(name, pkey),
            "channel": channel,
            "bounceType": "hard",
            "reason": _codes(response),
        }
        yield Source(pk, organization_id, at, data)
    yield from _late_bounces(organizations, since)


def _late_bounces(organizations: list[int], since: dt.datetime) -> Iterator[Source]:
    """A hard bounce or a complaint an email service provider reported by webhook after the send
    (messages.provider_events): keyed by its delivery like a bounce at the send, so a delivery is
    notified once (its first hard bounce or complaint; the provider's repeats are not)."""
    rows = (
        ProviderEvent.objects.filter(organization_id__in=organizations, created_at__gte=since)
        .filter(quarantined=True, delivery__is_proof=False, delivery__event_link__isnull=False)
        .order_by("created_at", "id")  # the first of a delivery's is the one notified
        .values_list(
            "delivery_id",
            "organization_id",
            "created_at",
            f"delivery__{EVENT_OF_DELIVERY}configuration__name",
            f"delivery__{EVENT_OF_DELIVERY}pkey",
            "kind",
            "description",
        )
    )
    for pk, organization_id, at, name, pkey, kind, description in rows.iterator(chunk_size=CHUNK):
        data = {
            **_event_data(name, pkey),
            "channel": "email",
            "bounceType": "complaint" if kind == ProviderEvent.Kind.COMPLAINT else "hard",
            "reason": _codes(description),
        }
        yield Source(pk, organization_id, at, data)


REPLY_CODE = re.compile(r"\b[45]\d\d\b")
ENHANCED_CODE = re.compile(r"\b[45]\.\d{1,3}\.\d{1,3}\b")


def _codes(response: str) -> str:
    """The server's codes only ("550 5.1.1"): its text often repeats the address, which a
    notification does not carry (it outlives a person's erasure)."""
    found = [m.group() for m in (REPLY_CODE.search(response), ENHANCED_CODE.search(response)) if m]
    return " ".join(found)


HIT_EVENT = "delivery__event_link__event__"


def _hits(kind: str) -> Any:
    def hits(organizations: list[int], since: dt.datetime) -> Iterator[Source]:
        rows = (
            TrackingHit.objects.filter(organization_id__in=organizations, created_at__gte=since, kind=kind)
            .filter(automated=False, **{f"{HIT_EVENT}isnull": False})
            .order_by()
            .values_list(
                "pk",
                "organization_id",
                "created_at",
                f"{HIT_EVENT}configuration__name",
                f"{HIT_EVENT}pkey",
                "url",
            )
        )
        for pk, organization_id, at, name, pkey, url in rows.iterator(chunk_size=CHUNK):
            data = _event_data(name, pkey) | ({"url": url} if kind == TrackingHit.Kind.CLICK else {})
            yield Source(pk, organization_id, at, data)

    return hits


def _unsubscribes(organizations: list[int], since: dt.datetime) -> Iterator[Source]:
    rows = (
        Unsubscription.objects.filter(created_at__gte=since, event__organization_id__in=organizations)
        .order_by()
        .values_list(
            "event_id", "event__organization_id", "created_at", "event__configuration__name", "event__pkey"
        )
    )
    for pk, organization_id, at, name, pkey in rows.iterator(chunk_size=CHUNK):
        yield Source(pk, organization_id, at, _event_data(name, pkey))


SOURCES = {
    Kind.STATUS: _statuses,
    Kind.BOUNCE: _bounces,
    Kind.OPEN: _hits(TrackingHit.Kind.OPEN),
    Kind.CLICK: _hits(TrackingHit.Kind.CLICK),
    Kind.UNSUBSCRIBE: _unsubscribes,
}


def store_notifications(*, now: dt.datetime | None = None) -> int:
    """The scanner: a notification for each endpoint of each thing that happened since the cursor
    of its kind (less the grace), if the endpoint wants it and existed then. Idempotent. Returns
    how many notifications were new."""
    now = now or timezone.now()
    grace = dt.timedelta(seconds=settings.WEBHOOK_SCAN_GRACE_SECONDS)
    made = 0
    for kind, source in SOURCES.items():
        endpoints = list(WebhookEndpoint.objects.filter(enabled=True, **{WANTS[kind]: True}).order_by("pk"))
        cursor = WebhookCursor.objects.filter(kind=kind).first()
        if endpoints:
            oldest = min(e.created_at for e in endpoints)
            since = max(cursor.scanned_until - grace, oldest) if cursor else oldest
            made += _store(
                kind, source(sorted({e.organization_id for e in endpoints}), since), endpoints, now
            )
        if not endpoints and cursor is None:
            continue  # never wanted: nothing to write
        # Two runs overlapping (a slow one) may race here: no error, and a cursor set back by the
        # slower run only makes the next one read a little more again.
        WebhookCursor.objects.bulk_create(
            [WebhookCursor(kind=kind, scanned_until=now)], ignore_conflicts=True
        )
        WebhookCursor.objects.filter(kind=kind).update(scanned_until=now)
    return made


def _store(kind: str, sources: Iterable[Source], endpoints: list[WebhookEndpoint], now: dt.datetime) -> int:
    by_organization: dict[int, list[WebhookEndpoint]] = {}
    for endpoint in endpoints:
        by_organization.setdefault(endpoint.organization_id, []).append(endpoint)
    made, batch = 0, []
    for source in sources:
        for endpoint in by_organization.get(source.organization_id, []):
            if source.at < endpoint.created_at:
                continue  # before the endpoint existed: not backfilled
            payload = {"type": kind, "timestamp": _iso(source.at), "data": source.data}
            batch.append(
                WebhookNotification(
                    endpoint=endpoint,
                    kind=kind,
                    source_id=source.id,
                    webhook_id=f"msg_{secrets.token_urlsafe(18)}",
                    payload=payload,
                    next_attempt_at=now,
                )
            )
        if len(batch) >= CHUNK:
            made += _insert(batch)
            batch = []
    return made + _insert(batch)


def _insert(batch: list[WebhookNotification]) -> int:
    """Insert, skipping those already stored (the unique constraint); how many were new."""
    if not batch:
        return 0
    WebhookNotification.objects.bulk_create(batch, ignore_conflicts=True)
    # The new ones carry the ids drawn here; a duplicate kept its own.
    return WebhookNotification.objects.filter(webhook_id__in=[n.webhook_id for n in batch]).count()


# --- the sender -------------------------------------------------------------------------------


def claim_due(*, now: dt.datetime, limit: int) -> tuple[list[int], dt.datetime]:
    """Due notifications of enabled endpoints, each claimed until the returned lease runs out."""
    lease = now + dt.timedelta(seconds=settings.WEBHOOK_LEASE_SECONDS)
    due = WebhookNotification.objects.filter(
        state=State.PENDING, next_attempt_at__lte=now, endpoint__enabled=True
    ).order_by("next_attempt_at", "pk")
    claimed = []
    with transaction.atomic():
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True, of=("self",))
        for pk in list(due.values_list("pk", flat=True)[:limit]):
            won = WebhookNotification.objects.filter(
                pk=pk, state=State.PENDING, next_attempt_at__lte=now
            ).update(next_attempt_at=lease, attempts=F("attempts") + 1)
            if won:
                claimed.append(pk)
    return claimed, lease


@dataclass(frozen=True)
class Outgoing:
    notification_id: int
    endpoint_id: int
    url: str
    body: bytes
    headers: dict[str, str]


def _outgoing(ids: list[int]) -> tuple[list[Outgoing], list[tuple[int, int, str]]]:
    """What to POST for each claimed notification, or why it cannot go (too big, no secret)."""
    ready, refused = [], []
    secrets_by_endpoint: dict[int, str] = {}
    for notification in WebhookNotification.objects.filter(pk__in=ids).select_related("endpoint"):
        endpoint = notification.endpoint
        body = body_of(notification)
        if len(body) > settings.WEBHOOK_MAX_BODY_BYTES:
            refused.append(
                (notification.pk, endpoint.pk, f"body over {settings.WEBHOOK_MAX_BODY_BYTES} bytes")
            )
            continue
        try:
            if endpoint.pk not in secrets_by_endpoint:
                secrets_by_endpoint[endpoint.pk] = secret_of(endpoint)
        except encryption.InvalidToken:
            refused.append((notification.pk, endpoint.pk, "the secret cannot be decrypted (ENCRYPTION_KEYS)"))
            continue
        headers = headers_for(
            secret=secrets_by_endpoint[endpoint.pk], webhook_id=notification.webhook_id, body=body
        )
        ready.append(Outgoing(notification.pk, endpoint.pk, endpoint.url, body, headers))
    return ready, refused


def record_attempt(
    *,
    notification_id: int,
    endpoint_id: int,
    lease: dt.datetime,
    answer: webhook_http.Answer,
    started_at: dt.datetime,
) -> None:
    """The attempt in the endpoint's log, and what follows from it, in one transaction: delivered;
    or the next retry, or `failed` once the schedule is spent; the endpoint's run of failures. The
    notification changes only while our claim holds (a replay or a takeover since wins)."""
    now = timezone.now()
    with transaction.atomic():
        WebhookAttempt.objects.create(
            notification_id=notification_id,
            endpoint_id=endpoint_id,
            started_at=started_at,
            status_code=answer.status_code,
            duration_ms=answer.duration_ms,
            error=answer.error[:500],
        )
        ours = WebhookNotification.objects.filter(
            pk=notification_id, state=State.PENDING, next_attempt_at=lease
        )
        if answer.succeeded:
            ours.update(state=State.DELIVERED, delivered_at=now)
            WebhookEndpoint.objects.filter(pk=endpoint_id).update(failures_in_a_row=0)
            return
        attempts = ours.values_list("attempts", flat=True).first()
        if attempts is not None:
            delays = retry_delays()
            if attempts <= len(delays):
                ours.update(next_attempt_at=now + dt.timedelta(seconds=delays[attempts - 1]))
            else:
                ours.update(state=State.FAILED)
        WebhookEndpoint.objects.filter(pk=endpoint_id).update(failures_in_a_row=F("failures_in_a_row") + 1)
        limit = settings.WEBHOOK_DISABLE_AFTER_FAILURES
    last = answer.error or f"HTTP {answer.status_code}"
    reason = f"Disabled after {limit} failed attempts in a row (the last: {last})."
    WebhookEndpoint.objects.filter(pk=endpoint_id, enabled=True, failures_in_a_row__gte=limit).update(
        enabled=False, disabled_at=now, disabled_reason=reason[:300]
    )


def deliver_due(*, now: dt.datetime | None = None, limit: int | None = None) -> dict[str, int]:
    """Claim due notifications, POST them (WEBHOOK_SENDS_IN_FLIGHT at once, no transaction open),
    and record each answer as it comes. Returns counts."""
    limit = limit or settings.WEBHOOK_BATCH_SIZE
    ids, lease = claim_due(now=now or timezone.now(), limit=limit)
    counts = {"claimed": len(ids), "delivered": 0, "failed": 0}
    if not ids:
        return counts
    ready, refused = _outgoing(ids)
    started_at = timezone.now()
    for notification_id, endpoint_id, error in refused:
        answer = webhook_http.Answer(None, 0, error)
        record_attempt(
            notification_id=notification_id,
            endpoint_id=endpoint_id,
            lease=lease,
            answer=answer,
            started_at=started_at,
        )
        counts["failed"] += 1
    workers = max(1, min(settings.WEBHOOK_SENDS_IN_FLIGHT, len(ready)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webhook") as pool:
        futures = {pool.submit(_post, outgoing): outgoing for outgoing in ready}
        for future in as_completed(futures):
            outgoing = futures[future]
            answer, started_at = future.result()
            record_attempt(
                notification_id=outgoing.notification_id,
                endpoint_id=outgoing.endpoint_id,
                lease=lease,
                answer=answer,
                started_at=started_at,
            )
            counts["delivered" if answer.succeeded else "failed"] += 1
    return counts


def _post(outgoing: Outgoing) -> tuple[webhook_http.Answer, dt.datetime]:
    started_at = timezone.now()  # no database in these threads: the caller records
    return webhook_http.post(outgoing.url, body=outgoing.body, headers=outgoing.headers), started_at


PURGE_BATCH = 1000


def purge(*, now: dt.datetime | None = None) -> int:
    """Notifications older than WEBHOOK_RETENTION_DAYS (0: kept forever), delivered or failed, with
    their attempts: one bounded batch per run. Returns how many went."""
    if settings.WEBHOOK_RETENTION_DAYS <= 0:
        return 0
    cutoff = (now or timezone.now()) - dt.timedelta(days=settings.WEBHOOK_RETENTION_DAYS)
    old = WebhookNotification.objects.filter(created_at__lt=cutoff).exclude(state=State.PENDING)
    ids = list(old.order_by("created_at").values_list("pk", flat=True)[:PURGE_BATCH])
    if not ids:
        return 0
    WebhookNotification.objects.filter(pk__in=ids).delete()
    return len(ids)


def run(*, now: dt.datetime | None = None) -> dict[str, int]:
    """The beat's job: store what happened, then send what is due, for up to RUN_SECONDS; and purge
    a batch of old notifications."""
    totals = {"stored": store_notifications(now=now), "claimed": 0, "delivered": 0, "failed": 0}
    totals["purged"] = purge(now=now)
    deadline = time.monotonic() + RUN_SECONDS
    while time.monotonic() < deadline:
        counts = deliver_due(now=now)
        for name, n in counts.items():
            totals[name] += n
        if counts["claimed"] < settings.WEBHOOK_BATCH_SIZE:
            break
    return totals


def endpoints_disabled(organization: Organization | None) -> list[WebhookEndpoint]:
    """The disabled endpoints an administrator should hear of (None: every organization's)."""
    found = WebhookEndpoint.objects.filter(enabled=False)
    if organization is not None:
        found = found.filter(organization=organization)
    return list(found.order_by("pk"))


def delivery_log(endpoint: WebhookEndpoint, *, limit: int = 100) -> list[WebhookAttempt]:
    return list(
        WebhookAttempt.objects.filter(endpoint=endpoint)
        .select_related("notification")
        .order_by("-started_at", "-id")[:limit]
    )
