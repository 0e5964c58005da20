"""Process one event: claim -> expired? -> route -> target -> render -> deliver -> final status.

The claim is a conditional UPDATE with a lease, so a duplicate task or a second worker finds
nothing to do. Network I/O (SMTP, HTTP) runs outside any database transaction: claim in one short
transaction, send, then record the outcome (a Delivery row and the status) in another.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field

from billiard.pool import SIG_SOFT_TIMEOUT
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import OperationalError, close_old_connections, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from campaign.log_context import event_context
from campaign.metrics import EVENT_LATENCY, RETRIES
from campaign.models import Profile, Quarantine
from campaign.privacy import mask_address, mask_addresses
from events.models import FINAL_STATUSES, Event, EventConfiguration, Targeting
from events.transitions import transition, transition_many, transition_recording
from messages.rendering import TemplateError

logger = logging.getLogger(__name__)
S = Event.Status


@dataclass(frozen=True)
class Outcome:
    status: str
    reason: str = ""


def retry_delay(attempt: int) -> float:
    """Exponential backoff, jittered upwards only: base * 2^(attempt-1) * [1, 1.5). Never sooner than
    the operator's EVENT_RETRY_DELAY_SECONDS, and retries of a burst do not hit the server together."""
    base = settings.EVENT_RETRY_DELAY_SECONDS * (2 ** max(0, attempt - 1))
    return base * (1 + 0.5 * random.random())


class LeaseLost(Exception):
    """Another worker took the event over (our lease ran out): stop without sending."""


@dataclass
class Claim:
    """This worker's hold on one event: the lease value is the token every later write checks."""

    event_id: int
    lease: dt.datetime
    event: Event | None = None

    def renew(self) -> None:
        """Extend the lease just before sending unless plenty of it is left (`lease_is_ample`), so that
        a slow step (or the events before this one in a batch) cannot let it run out during the send
        and cause a double send. While the lease runs nobody else can hold the event: only an
        expired lease is ever reclaimed."""
        if lease_is_ample(self.lease, now=timezone.now()):
            return
        kept, renewed = renew_leases([self.event_id], self.lease)
        if not kept:
            raise LeaseLost
        self.lease = renewed


def lease_is_ample(lease: dt.datetime, *, now: dt.datetime) -> bool:
    """More than half the lease is left, and more than the longest a send can take (an SMTP
    conversation on a reused connection: about four exchanges of up to EMAIL_TIMEOUT each)."""
    left = (lease - now).total_seconds()
    return left > settings.EVENT_LEASE_SECONDS / 2 and left > 4 * settings.EMAIL_TIMEOUT + 5


@dataclass
class Decision:
    """What processing decided: the outcome, the fields to store with it, and the delivery to record."""

    outcome: Outcome
    fields: dict = field(default_factory=dict)
    delivery: dict | None = None
    quarantine: dict | None = None


def claim(event_id: int, *, now: dt.datetime) -> dt.datetime | None:
    """Take the event for this worker; return the lease (our claim's token) or None if not ours."""
    lease = now + dt.timedelta(seconds=settings.EVENT_LEASE_SECONDS)
    won = transition(
        event_id,
        to=S.PROCESSING,
        sources=[S.PENDING],
        extra=Q(next_attempt_at__lte=now),
        lease_expires_at=lease,
        attempts=F("attempts") + 1,
        enqueued_at=None,
    )
    return lease if won else None


def claim_due(event_ids: list[int], *, now: dt.datetime, limit: int) -> tuple[list[int], dt.datetime]:
    """Claim these events and, when a backlog waits, other due events up to `limit`, in one
    transaction: a burst costs one claim per batch instead of one per event. Returns the claimed
    ids (the task's own events first, in their order) and their lease."""
    lease = now + dt.timedelta(seconds=settings.EVENT_LEASE_SECONDS)
    due = Event.objects.filter(status=S.PENDING, next_attempt_at__lte=now)
    own_first = Case(When(pk__in=event_ids, then=Value(0)), default=Value(1))
    # A plain read first: when a batch already took these events and nothing else waits, that is
    # all the task costs.
    picked = list(due.order_by(own_first, "next_attempt_at", "pk").values_list("pk", flat=True)[:limit])
    if not picked:
        return [], lease
    claimed = transition_many(
        Q(pk__in=picked, next_attempt_at__lte=now),
        to=S.PROCESSING,
        sources=[S.PENDING],
        lease_expires_at=lease,
        attempts=F("attempts") + 1,
        enqueued_at=None,
    )
    order = {pk: position for position, pk in enumerate(event_ids)}
    return sorted(claimed, key=lambda pk: (order.get(pk, len(order)), pk)), lease


def _load(event_ids: list[int]) -> list[Event]:
    """The claimed events with everything processing reads about them, in one query."""
    rows = Event.objects.select_related(
        "configuration__organization", "configuration__message__live_version"
    ).in_bulk(event_ids)
    return [rows[pk] for pk in event_ids if pk in rows]


def process(event_id: int) -> str | None:
    """Process one event. Returns the status it reached, or None if another worker has it."""
    lease = _with_database_retries(lambda: claim(event_id, now=timezone.now()))
    if lease is None:
        return None
    [event] = _load([event_id])
    return _process_in_context(event, Claim(event_id=event_id, lease=lease))  # its own quarantine query


def process_batch(event_ids: list[int], *, limit: int | None = None) -> dict[int, str | None]:
    """The worker task's work: these events and the due events a backlog left waiting (see
    `claim_due`), each sent and recorded on its own, as `process` does. Returns id -> status.

    While the batch runs, the leases of the events still waiting are renewed together, and the
    events (with their configuration, message and live version) are read again every
    BATCH_REFRESH_SECONDS, so that a pause or an unpublish reaches them as it would single events.
    """
    limit = max(limit or settings.EVENT_CLAIM_BATCH, len(event_ids))
    ids, lease = _with_database_retries(lambda: claim_due(event_ids, now=timezone.now(), limit=limit))
    waiting: list[Event] = []
    held: Claim | None = None  # the event in hand, not yet recorded
    done: dict[int, str | None] = {}
    try:
        waiting = _load(ids)
        loaded_at = time.monotonic()
        quarantine = QuarantineLookup.for_events(waiting)
        while waiting:
            if not lease_is_ample(lease, now=timezone.now()):
                kept, lease = _with_database_retries(
                    lambda ids=[e.pk for e in waiting], old=lease: renew_leases(ids, old)
                )
                waiting = [e for e in waiting if e.pk in kept]  # a lease that ran out: another worker's now
                if not waiting:
                    break
            if time.monotonic() - loaded_at > BATCH_REFRESH_SECONDS:
                waiting, loaded_at = _load([e.pk for e in waiting]), time.monotonic()
                if not waiting:
                    break
            event = waiting[0]
            held = Claim(event_id=event.pk, lease=lease, event=event)
            waiting.pop(0)
            try:
                done[event.pk] = _process_in_context(event, held, quarantine)
            except SoftTimeLimitExceeded:
                raise
            except Exception:  # e.g. a record that keeps failing: the lease expires, the sweep retries it
                logger.exception("event %s could not be recorded; the sweep will retry it", event.pkey)
                done[event.pk] = None
            held = None
    except SoftTimeLimitExceeded:
        _out_of_time(held, ids_left=[e.pk for e in waiting], lease=lease)
    return done


def _out_of_time(held: Claim | None, *, ids_left: list[int], lease: dt.datetime) -> None:
    """The task's soft time limit struck (EVENT_TASK_SOFT_TIME_LIMIT_SECONDS): the batch stops.

    The event in hand is tried again later, as after any temporary failure (its attempt counted,
    so a limit that keeps striking ends in `deliveryFailed`); the limit never strikes between its
    send and the record of that send (`_soft_time_limit_held`). The events still waiting go back to
    `pending` as they were before this batch claimed them, for the sweep to hand them out again at
    once, instead of waiting for their lease to run out.
    """
    limit = settings.EVENT_TASK_SOFT_TIME_LIMIT_SECONDS
    reason = f"the worker's task ran out of time (EVENT_TASK_SOFT_TIME_LIMIT_SECONDS, {limit:g} s)"
    logger.warning("%s: %d event(s) go back to the queue", reason, len(ids_left) + (held is not None))
    try:
        if held is not None and held.event is not None:
            event = held.event
            _with_database_retries(lambda: _record(event, held, _retry_or_fail(event, reason)))
        if ids_left:
            _with_database_retries(
                lambda: transition_many(
                    Q(pk__in=ids_left, lease_expires_at=lease),
                    to=S.PENDING,
                    sources=[S.PROCESSING],
                    reason=f"not processed: {reason}",
                    attempts=F("attempts") - 1,
                    lease_expires_at=None,
                    enqueued_at=None,
                    next_attempt_at=timezone.now(),
                )
            )
    except Exception:  # the leases still run out, and the sweep takes the events over then
        logger.exception("the events of a batch out of time could not be released")


BATCH_REFRESH_SECONDS = 1.0


def renew_leases(event_ids: list[int], lease: dt.datetime) -> tuple[set[int], dt.datetime]:
    """Extend the lease of those events that are still ours (held with `lease`); return them and
    the new lease. One event before its send, or a batch's waiting events together."""
    renewed = timezone.now() + dt.timedelta(seconds=settings.EVENT_LEASE_SECONDS)
    with transaction.atomic():
        ours = Event.objects.filter(pk__in=event_ids, status=S.PROCESSING, lease_expires_at=lease)
        kept = set(ours.select_for_update().values_list("pk", flat=True))
        Event.objects.filter(pk__in=kept).update(lease_expires_at=renewed)
    return kept, renewed


def _process_in_context(event: Event, held: Claim, quarantine: QuarantineLookup | None = None) -> str | None:
    with event_context(pkey=event.pkey, organization=event.configuration.organization.slug):
        return _process_claimed(event, held, quarantine or QuarantineLookup())


@dataclass
class QuarantineLookup:
    """Whether an address is quarantined: the addresses a batch's events carry are read in one query;
    any other (a profile's address) is looked up on its own."""

    checked: dict[tuple[int, str], set[str]] = field(default_factory=dict)
    quarantined: dict[tuple[int, str], set[str]] = field(default_factory=dict)

    @classmethod
    def for_events(cls, events: list[Event]) -> QuarantineLookup:
        lookup = cls()
        for event in events:
            address = _event_address(event)
            if address:
                lookup.checked.setdefault((event.organization_id, event.configuration.channel), set()).add(
                    address
                )
        for (organization_id, channel), addresses in lookup.checked.items():
            found = Quarantine.objects.filter(
                organization_id=organization_id, channel=channel, address__in=addresses
            ).values_list("address", flat=True)
            lookup.quarantined[(organization_id, channel)] = set(found)
        return lookup

    def add(self, *, organization_id: int, channel: str, address: str, reason: str = "") -> None:
        """An address this batch just quarantined (a permanent failure): the next events see it."""
        key = (organization_id, channel)
        self.checked.setdefault(key, set()).add(address.lower())
        self.quarantined.setdefault(key, set()).add(address.lower())

    def __call__(self, *, organization_id: int, channel: str, address: str) -> bool:
        address, key = address.lower(), (organization_id, channel)
        if address in self.checked.get(key, ()):
            return address in self.quarantined[key]
        return Quarantine.objects.filter(
            organization_id=organization_id, channel=channel, address=address
        ).exists()


def _event_address(event: Event) -> str:
    """The address an event-based event carries ("" for profile targeting: the profile's is known later)."""
    from messages.services import recipient_for

    if event.configuration.targeting != Targeting.EVENT:
        return ""
    return recipient_for(event=event, profile=None).address.lower()


def _process_claimed(event: Event, held: Claim, quarantine: QuarantineLookup) -> str | None:
    # Once the send starts, a soft time limit waits until the end of this block (see below).
    with contextlib.ExitStack() as sending:
        return _process_and_record(event, held, quarantine, sending)


@contextlib.contextmanager
def _soft_time_limit_held() -> Iterator[None]:
    """Hold back the task's soft time limit (billiard's signal) while this runs: a message that was
    sent must be recorded, or a later attempt would send it again. The limit strikes as soon as the
    block ends. The send itself is bounded (EMAIL_TIMEOUT, the gateways' timeouts), and the hard
    time limit stays the backstop."""
    if SIG_SOFT_TIMEOUT is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {SIG_SOFT_TIMEOUT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _process_and_record(
    event: Event, held: Claim, quarantine: QuarantineLookup, sending: contextlib.ExitStack
) -> str | None:
    try:
        decision = _decide_and_deliver(event, held, quarantine, sending)
    except LeaseLost:
        logger.warning("event %s: lease lost before sending; another worker has it", event.pkey)
        return None
    except SoftTimeLimitExceeded:
        raise  # the batch ends this event (`_out_of_time`)
    except Exception as error:  # a bug must not strand the event in `processing` until the lease ends
        # The frames, not the message: an exception's text may quote the event's data.
        frames = "".join(traceback.format_tb(error.__traceback__))
        logger.error("event %s failed unexpectedly: %s\n%s", event.pkey, error.__class__.__name__, frames)
        decision = _retry_or_fail(event, f"internal error: {error.__class__.__name__}")
    recorded = _with_database_retries(lambda: _record(event, held, decision))
    if decision.quarantine is not None:
        quarantine.add(**decision.quarantine)
    if not recorded:
        logger.warning("event %s: lease lost before recording %s", event.pkey, decision.outcome.status)
        return None
    status = decision.outcome.status
    logger.info(
        "event %s -> %s", event.pkey, status, extra={"status": status, "reason": decision.outcome.reason}
    )
    if status == S.PENDING:
        RETRIES.labels(event.configuration.channel).inc()
    elif status in FINAL_STATUSES:
        EVENT_LATENCY.labels(status).observe((timezone.now() - event.created_at).total_seconds())
    return status


def _record(event: Event, held: Claim, decision: Decision) -> bool:
    """The delivery, the quarantine and the final status, atomically (one statement on PostgreSQL).

    A message that was sent is recorded even if our lease was lost meanwhile, so that whoever holds
    the event now sees the delivery and does not send it again.
    """
    from messages import services as message_services

    delivery = message_services.delivery_row(**decision.delivery) if decision.delivery else None
    # A quarantine (an upsert) joins the same transaction; transition_recording then runs inside it.
    with transaction.atomic() if decision.quarantine else contextlib.nullcontext():
        if decision.quarantine:
            message_services.quarantine(**decision.quarantine)
        return transition_recording(
            event.pk,
            to=decision.outcome.status,
            source=S.PROCESSING,
            delivery=delivery,
            reason=decision.outcome.reason,
            lease=held.lease,
            **decision.fields,
        )


def _with_database_retries(operation, *, attempts: int = 8):
    """Ride out transient database errors (SQLite's lock, a dropped connection) around a write
    that must happen: an email already sent has to be recorded."""
    for attempt in range(attempts):
        try:
            return operation()
        except OperationalError:
            if attempt == attempts - 1:
                raise
            close_old_connections()
            time.sleep(min(0.05 * 2**attempt, 2.0))
    raise AssertionError("unreachable")


def _decide_and_deliver(
    event: Event, held: Claim, is_quarantined: QuarantineLookup, sending: contextlib.ExitStack
) -> Decision:
    from messages import services as message_services
    from messages.models import Delivery, TransactionalMessage

    if _expired(event):
        return Decision(Outcome(S.TOO_OLD, "expired before it could be sent"))
    if event.attempts > 1 and event.deliveries.filter(outcome=Delivery.Outcome.SENT).exists():
        # An earlier attempt sent it but died before recording the status: never send twice.
        return Decision(Outcome(S.PROCESSED, "sent by an earlier attempt"))
    configuration = event.configuration
    if configuration.status != EventConfiguration.Status.PUBLISHED:
        return Decision(
            Outcome(S.ROUTING_FAILED, f"the event type {configuration.event_id} is not published")
        )
    message = configuration.message  # loaded with the event
    if message is None or message.status == TransactionalMessage.Status.DRAFT or message.live_version is None:
        return Decision(Outcome(S.ROUTING_FAILED, f"no published message for {configuration.event_id}"))
    if message.status == TransactionalMessage.Status.PAUSED:
        return Decision(Outcome(S.PAUSED, "the message is paused"))

    profile: Profile | None = None
    if configuration.targeting == Targeting.PROFILE:
        profile = find_profile(event)
        if profile is None:
            return Decision(Outcome(S.TARGETING_FAILED, "no profile matches the reconciliation key"))
        if profile.blocklisted or profile.opted_out:
            return Decision(
                Outcome(S.IGNORED, "the profile has opted out or is blocklisted"), {"profile": profile}
            )
    recipient = message_services.recipient_for(event=event, profile=profile)
    if not recipient.address:
        reason = f"the profile has no {configuration.channel} address"
        return Decision(Outcome(S.TARGETING_FAILED, reason), {"profile": profile})
    if is_quarantined(
        organization_id=event.organization_id, channel=configuration.channel, address=recipient.address
    ):
        reason = f"{mask_address(recipient.address)} is quarantined"
        return Decision(Outcome(S.IGNORED, reason), {"profile": profile})

    version = message.live_version
    try:
        rendered = message_services.compose(version=version, event=event, profile=profile)
    except SoftTimeLimitExceeded:
        raise
    except (
        TemplateError
    ) as error:  # beyond a bound of rendering (RENDER_*): the reason, in our words, names it
        reason = f"the message could not be rendered: {error}"
        return Decision(Outcome(S.DELIVERY_FAILED, reason), {"profile": profile, "last_error": reason})
    except Exception as error:  # a template that fails at render time will fail every time
        reason = f"the message could not be rendered: {error}"
        return Decision(Outcome(S.DELIVERY_FAILED, reason), {"profile": profile})
    if _expired(event):  # never send after expiration, even if rendering took long
        return Decision(Outcome(S.TOO_OLD, "expired before it could be sent"), {"profile": profile})

    _with_database_retries(held.renew)
    sending.enter_context(_soft_time_limit_held())
    started = time.monotonic()
    result = message_services.send(channel=configuration.channel, rendered=rendered, recipient=recipient)
    delivery = {
        "message": message,
        "version": version,
        "recipient": recipient,
        "result": result,
        "duration_ms": int((time.monotonic() - started) * 1000),
    }
    common = {"profile": profile, "message_version": version}
    answer = mask_addresses(result.provider_response)  # "550 <jane@example.com>: unknown" -> j***@
    if result.sent:
        return Decision(
            Outcome(S.PROCESSED, result.provider_message_id), {**common, "last_error": ""}, delivery
        )
    if result.outcome == "permanentFailure":
        quarantine = {
            "organization_id": event.organization_id,
            "channel": configuration.channel,
            "address": recipient.address,
            "reason": result.provider_response,
        }
        return Decision(
            Outcome(S.DELIVERY_FAILED, answer), {**common, "last_error": answer}, delivery, quarantine
        )
    decision = _retry_or_fail(event, answer)
    decision.fields.update(common)
    decision.delivery = delivery
    return decision


def _expired(event: Event) -> bool:
    return event.expiration_at is not None and event.expiration_at <= timezone.now()


def _retry_or_fail(event: Event, error: str) -> Decision:
    """A temporary failure: try again later, unless the attempts or the expiration run out first."""
    attempts = event.attempts  # read after the claim, which counted this attempt
    if attempts >= settings.EVENT_MAX_ATTEMPTS:
        return Decision(
            Outcome(S.DELIVERY_FAILED, f"{attempts} attempts failed; last: {error}"), {"last_error": error}
        )
    next_attempt_at = timezone.now() + dt.timedelta(seconds=retry_delay(attempts))
    if event.expiration_at is not None and next_attempt_at >= event.expiration_at:
        reason = f"expires before the next attempt; last error: {error}"
        return Decision(Outcome(S.TOO_OLD, reason), {"last_error": error})
    return Decision(
        Outcome(S.PENDING, f"attempt {attempts} failed, retrying: {error}"),
        {
            "last_error": error,
            "next_attempt_at": next_attempt_at,
            "enqueued_at": None,
            "lease_expires_at": None,
        },
    )


def find_profile(event: Event) -> Profile | None:
    """The profile whose reconciliation field equals the event's key, in the event's organization."""
    configuration = event.configuration
    value = event.ctx.get(configuration.reconciliation_event_field)
    if value in (None, ""):
        return None
    profiles = Profile.objects.filter(organization_id=event.organization_id)
    column = {
        "email": "email__iexact",
        "firstName": "first_name",
        "lastName": "last_name",
        "mobilePhone": "mobile_phone",
        "language": "language",
    }.get(configuration.reconciliation_profile_field)
    if column:
        return profiles.filter(**{column: value}).order_by("pk").first()
    return (
        profiles.filter(**{f"data__{configuration.reconciliation_profile_field}": value})
        .order_by("pk")
        .first()
    )


def recover(*, now: dt.datetime | None = None, limit: int | None = None) -> dict[str, int]:
    """The sweep's work: reclaim expired leases, expire what is past expiration, and enqueue due events."""
    from events import selectors
    from events.services import enqueue_events

    now = now or timezone.now()
    limit = limit or settings.SWEEP_BATCH_SIZE
    reclaimed_ids = list(selectors.expired_leases(now=now).values_list("pk", flat=True)[:limit])
    reclaimed = (
        transition_many(
            Q(pk__in=reclaimed_ids, lease_expires_at__lt=now),
            to=S.PENDING,
            sources=[S.PROCESSING],
            reason="the worker's lease expired (worker crash or timeout)",
            lease_expires_at=None,
            enqueued_at=None,
            next_attempt_at=now,
        )
        if reclaimed_ids
        else []
    )
    expired_ids = list(selectors.expired_waiting_events(now=now).values_list("pk", flat=True)[:limit])
    expired = (
        transition_many(
            Q(pk__in=expired_ids, expiration_at__lt=now),
            to=S.TOO_OLD,
            sources=[S.PENDING, S.PAUSED],
            reason="expired before it could be sent",
        )
        if expired_ids
        else []
    )
    stale = now - dt.timedelta(seconds=settings.EVENT_REENQUEUE_AFTER_SECONDS)
    with transaction.atomic():
        due = list(
            selectors.due_pending_events(now=now)
            .filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=stale))
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:limit]
        )
        if due:
            Event.objects.filter(pk__in=due).update(enqueued_at=now)
            transaction.on_commit(lambda: enqueue_events(due))
    return {"reclaimed": len(reclaimed), "expired": len(expired), "enqueued": len(due)}
