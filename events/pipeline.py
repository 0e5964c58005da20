"""Processing: one event, or a worker task's batch: claim -> expired? -> route -> target -> render ->
deliver -> record the final status.

Network I/O (SMTP, HTTP) runs outside any database transaction: claim in one short transaction
(events.claims), send, then record the decision (events.decisions: a Delivery row, a quarantine,
the status) in another. The reads are in events.selectors, the sweep in events.sweep.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import signal
import threading
import time
import traceback
from collections.abc import Iterator

from billiard.pool import SIG_SOFT_TIMEOUT
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from campaign.log_context import event_context
from campaign.metrics import EVENT_LATENCY, RETRIES
from campaign.models import Profile
from campaign.privacy import mask_address, mask_addresses
from events import claims, selectors
from events.claims import Claim, LeaseLost, with_database_retries
from events.decisions import Decision, DeliveryRecord, Outcome, QuarantineEntry, expired, retry_or_fail
from events.models import FINAL_STATUSES, Event, EventConfiguration, Targeting
from events.selectors import QuarantineLookup
from events.transitions import transition_recording
from messages import services as message_services
from messages.models import TransactionalMessage
from messages.rendering import TemplateError

logger = logging.getLogger(__name__)
S = Event.Status

BATCH_REFRESH_SECONDS = 1.0


def process(event_id: int) -> str | None:
    """Process one event. Returns the status it reached, or None if another worker has it."""
    lease = with_database_retries(lambda: claims.claim(event_id, now=timezone.now()))
    if lease is None:
        return None
    [event] = selectors.claimed_events([event_id])
    return _process_in_context(event, Claim(event_id=event_id, lease=lease))  # its own quarantine query


def process_batch(event_ids: list[int], *, limit: int | None = None) -> dict[int, str | None]:
    """The worker task's work: these events and the due events a backlog left waiting (see
    `claims.claim_due`), each sent and recorded on its own, as `process` does. Returns id -> status.

    While the batch runs, the leases of the events still waiting are renewed together, and the
    events (with their configuration, message and live version) are read again every
    BATCH_REFRESH_SECONDS, so that a pause or an unpublish reaches them as it would single events.
    """
    limit = max(limit or settings.EVENT_CLAIM_BATCH, len(event_ids))
    ids, lease = with_database_retries(lambda: claims.claim_due(event_ids, now=timezone.now(), limit=limit))
    waiting: list[Event] = []
    held: Claim | None = None  # the event in hand, not yet recorded
    done: dict[int, str | None] = {}
    try:
        waiting = selectors.claimed_events(ids)
        loaded_at = time.monotonic()
        quarantine = _quarantine_lookup(waiting)
        while waiting:
            if not claims.lease_is_ample(lease, now=timezone.now()):
                renewal = functools.partial(claims.renew_leases, [e.pk for e in waiting], lease)
                kept, lease = with_database_retries(renewal)
                waiting = [e for e in waiting if e.pk in kept]  # a lease that ran out: another worker's now
                if not waiting:
                    break
            if time.monotonic() - loaded_at > BATCH_REFRESH_SECONDS:
                waiting, loaded_at = selectors.claimed_events([e.pk for e in waiting]), time.monotonic()
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
            event, claim = held.event, held
            with_database_retries(lambda: _record(event, claim, retry_or_fail(event, reason)))
        if ids_left:
            with_database_retries(
                lambda: claims.release_unprocessed(ids_left, lease=lease, reason=f"not processed: {reason}")
            )
    except Exception:  # the leases still run out, and the sweep takes the events over then
        logger.exception("the events of a batch out of time could not be released")


def _quarantine_lookup(events: list[Event]) -> QuarantineLookup:
    """The quarantine of the addresses these events carry, read at once (profile targeting's
    addresses are known later, and looked up one by one)."""
    return QuarantineLookup.for_addresses(
        (
            event.organization_id,
            event.configuration.channel,
            message_services.recipient_for(event=event, profile=None).address,
        )
        for event in events
        if event.configuration.targeting == Targeting.EVENT
    )


def _process_in_context(event: Event, held: Claim, quarantine: QuarantineLookup | None = None) -> str | None:
    with event_context(pkey=event.pkey, organization=event.configuration.organization.slug):
        return _process_claimed(event, held, quarantine or QuarantineLookup())


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
        decision = retry_or_fail(event, f"internal error: {error.__class__.__name__}")
    recorded = with_database_retries(lambda: _record(event, held, decision))
    if decision.quarantine is not None:
        entry = decision.quarantine
        quarantine.add(organization_id=entry.organization_id, channel=entry.channel, address=entry.address)
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
    delivery = None
    if decision.delivery is not None:
        sent = decision.delivery
        delivery = message_services.delivery_row(
            message=sent.message,
            version=sent.version,
            recipient=sent.recipient,
            result=sent.result,
            duration_ms=sent.duration_ms,
            rendered=sent.rendered,
        )
    entry = decision.quarantine
    # A quarantine (an upsert) joins the same transaction; transition_recording then runs inside it.
    with transaction.atomic() if entry else contextlib.nullcontext():
        if entry:
            message_services.quarantine(
                organization_id=entry.organization_id,
                channel=entry.channel,
                address=entry.address,
                reason=entry.reason,
            )
        return transition_recording(
            event.pk,
            to=decision.outcome.status,
            source=S.PROCESSING,
            delivery=delivery,
            reason=decision.outcome.reason,
            lease=held.lease,
            **decision.event_fields(),
        )


def _decide_and_deliver(
    event: Event, held: Claim, is_quarantined: QuarantineLookup, sending: contextlib.ExitStack
) -> Decision:
    if expired(event):
        return Decision(Outcome(S.TOO_OLD, "expired before it could be sent"))
    if event.attempts > 1 and selectors.sent_by_earlier_attempt(event):
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
        profile = selectors.find_profile(event)
        if profile is None:
            return Decision(Outcome(S.TARGETING_FAILED, "no profile matches the reconciliation key"))
        if profile.blocklisted or profile.opted_out:
            reason = "the profile has opted out or is blocklisted"
            return Decision(Outcome(S.IGNORED, reason), profile=profile)
    recipient = message_services.recipient_for(event=event, profile=profile)
    if not recipient.address:
        reason = f"the profile has no {configuration.channel} address"
        return Decision(Outcome(S.TARGETING_FAILED, reason), profile=profile)
    if is_quarantined(
        organization_id=event.organization_id, channel=configuration.channel, address=recipient.address
    ):
        reason = f"{mask_address(recipient.address)} is quarantined"
        return Decision(Outcome(S.IGNORED, reason), profile=profile)

    version = message.live_version
    try:
        rendered = message_services.compose(version=version, event=event, profile=profile)
    except SoftTimeLimitExceeded:
        raise
    except TemplateError as error:  # beyond a bound of rendering (RENDER_*): the reason names it
        reason = f"the message could not be rendered: {error}"
        return Decision(Outcome(S.DELIVERY_FAILED, reason), profile=profile, last_error=reason)
    except Exception as error:  # a template that fails at render time will fail every time
        reason = f"the message could not be rendered: {error}"
        return Decision(Outcome(S.DELIVERY_FAILED, reason), profile=profile)
    if expired(event):  # never send after expiration, even if rendering took long
        return Decision(Outcome(S.TOO_OLD, "expired before it could be sent"), profile=profile)

    with_database_retries(held.renew)
    sending.enter_context(_soft_time_limit_held())
    started = time.monotonic()
    result = message_services.send(channel=configuration.channel, rendered=rendered, recipient=recipient)
    delivery = DeliveryRecord(
        message=message,
        version=version,
        recipient=recipient,
        result=result,
        duration_ms=int((time.monotonic() - started) * 1000),
        rendered=rendered,
    )
    answer = mask_addresses(result.provider_response)  # "550 <jane@example.com>: unknown" -> j***@
    if result.sent:
        decision = Decision(Outcome(S.PROCESSED, result.provider_message_id), last_error="")
    elif result.outcome == "permanentFailure":
        decision = Decision(
            Outcome(S.DELIVERY_FAILED, answer),
            last_error=answer,
            quarantine=QuarantineEntry(
                organization_id=event.organization_id,
                channel=configuration.channel,
                address=recipient.address,
                reason=result.provider_response,
            ),
        )
    else:
        decision = retry_or_fail(event, answer)
    return decision.with_send(profile=profile, version=version, delivery=delivery)
