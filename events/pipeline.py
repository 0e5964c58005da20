"""Processing: one event, or a worker task's batch: claim -> expired? -> route -> target -> render ->
send -> record the final status.

Network I/O (SMTP, HTTP) runs outside any database transaction: claim in one short transaction
(events.claims), send, then record the decision (events.decisions: a Delivery row, a quarantine,
the status) in another. The reads are in events.selectors, the sweep in events.sweep.

Sends overlap, within a bound. The task's thread claims, routes and targets each event, then hands
it to one of the process's sender threads (events.sending), which renders and sends it (its channel
waits on a server: SMTP, a gateway) without touching the database; the outcomes are recorded in
groups, one statement per group (events.transitions.record_moves), by the process's recorder
thread (events.sending.record). A send is *in flight* from its hand-over to a sender (so from
before its conversation with the server starts) until the commit of its record, and a worker
process never has more than EVENT_SENDS_IN_FLIGHT sends in flight. So a worker killed at any
instant (SIGKILL, the hard time limit, a lost machine) leaves at most EVENT_SENDS_IN_FLIGHT
messages per process that may have gone out with no row recording them: those, and only those,
are sent again when their leases run out and the sweep hands them out; every other event it held
(its claims: EVENT_CLAIM_BATCH at a time, and more while a backlog waits) is sent once. Two
sends to the same address are never in flight together: the second waits for the first's outcome
(messages to one person keep their order, and a quarantine the first causes stops the second).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import logging
import queue
import time
import traceback
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from campaign.log_context import event_context
from campaign.metrics import EVENT_LATENCY, RETRIES
from campaign.models import Profile
from campaign.privacy import mask_address, mask_addresses
from events import claims, enrichment, reasons, selectors, sending, sensitive, typology
from events.claims import Claim, LeaseLost, with_database_retries
from events.decisions import (
    Decision,
    DeliveryRecord,
    Outcome,
    QuarantineEntry,
    expired,
    retry_or_fail,
    wait_for_rate_limit,
)
from events.models import FINAL_STATUSES, Event, EventConfiguration, Targeting
from events.selectors import EnrichmentLookup, QuarantineLookup
from events.transitions import Move, record_moves, recording_statement, write_recording
from messages import providers
from messages import services as message_services
from messages.channels import Recipient, RenderedMessage, SendResult
from messages.models import MessageVersion, TransactionalMessage
from messages.rendering import TemplateError

logger = logging.getLogger(__name__)
S = Event.Status

BATCH_REFRESH_SECONDS = 1.0
# How long a full window waits for more sends to finish before recording those that have: groups
# are larger, yet a finished send is not left unrecorded while slow ones drag on.
GROUP_PATIENCE_SECONDS = 0.5


def process(event_id: int) -> str | None:
    """Process one event. Returns the status it reached, or None if another worker has it."""
    lease = with_database_retries(lambda: claims.claim(event_id, now=timezone.now()))
    if lease is None:
        return None
    return _Batch(limit=1).run([event_id], lease, quarantine_at_once=False).get(event_id)


def process_batch(
    event_ids: list[int], *, limit: int | None = None, keep_going_for: float = 0.0
) -> dict[int, str | None]:
    """The worker task's work: these events and the due events a backlog left waiting, up to
    `limit` (see `claims.claim_due`); for `keep_going_for` seconds, more due events as long as
    some wait (claimed `limit` at a time while the last ones are sent, so that the sends do not
    stop between two claims). Returns id -> status (None: another worker has it), in the
    claims' order; nothing when the task ran out of time (`_Batch._out_of_time`).

    While the batch runs, the leases of the events still waiting are renewed together, and the
    events (with their configuration, message and live version) are read again every
    BATCH_REFRESH_SECONDS, so that a pause or an unpublish reaches them as it would single events.
    """
    limit = max(limit or settings.EVENT_CLAIM_BATCH, len(event_ids))
    ids, lease = with_database_retries(lambda: claims.claim_due(event_ids, now=timezone.now(), limit=limit))
    if not ids:
        return {}
    batch = _Batch(limit=limit, keep_going_until=time.monotonic() + keep_going_for)
    return batch.run(ids, lease, quarantine_at_once=True)


@dataclass
class _Send:
    """An event routed and targeted, to render and send (on a sender thread, or the task's): all
    it needs is in memory, so that the thread touches no database."""

    event: Event
    claim: Claim
    message: TransactionalMessage
    version: MessageVersion
    profile: Profile | None
    recipient: Recipient
    enriched: enrichment.Enriched | None = None

    @property
    def channel(self) -> str:
        return self.event.configuration.channel

    @property
    def address(self) -> tuple[int, str, str]:
        return (self.event.organization_id, self.channel, self.recipient.address.lower())


@dataclass
class _Decided:
    """A decision not recorded yet; one that records a send is in flight until it is."""

    event: Event
    claim: Claim
    decision: Decision
    sent: bool


class _Batch:
    """The events one task claimed, processed in order within the send window."""

    def __init__(self, *, limit: int, keep_going_until: float = 0.0) -> None:
        self.limit = limit
        self.keep_going_until = keep_going_until
        self.capacity = max(1, int(settings.EVENT_SENDS_IN_FLIGHT))
        self.ids: list[int] = []  # every event claimed, in order
        self.waiting: list[Claim] = []
        self.configurations: dict[int, EventConfiguration] = {}  # read with the events, kept for a while
        self.loaded_at = 0.0
        self.quarantine = QuarantineLookup()
        self.enrichment = EnrichmentLookup()  # the rows and profiles the events' joins need
        self.sending: dict[futures.Future[Decision], _Send] = {}  # on sender threads
        self.unrecorded: list[_Decided] = []
        self.sent_unrecorded = 0
        # Records are written on the process's recorder thread (its own connection), beside the
        # task's work, when the window holds several sends; not inside a caller's transaction,
        # whose rows another connection would not see.
        self.recorder = (
            self.capacity > 1 and connection.vendor == "postgresql" and not connection.in_atomic_block
        )
        # Records being written: future -> (its group, the sends in it).
        self.recording: dict[futures.Future[tuple[set[int], set[int]]], tuple[list[_Decided], int]] = {}
        self.sent_recording = 0
        self.finished: queue.SimpleQueue[futures.Future[Any]] = queue.SimpleQueue()
        self.done: dict[int, str | None] = {}

    def run(self, ids: list[int], lease: dt.datetime, *, quarantine_at_once: bool) -> dict[int, str | None]:
        held: Claim | None = None  # the event in hand, until it is decided or handed to a sender
        with sending.soft_time_limit_held():
            try:
                self._load(ids, lease, quarantine_at_once=quarantine_at_once)
                while True:
                    while self.in_flight >= self.capacity:  # room first: the limit may strike meanwhile
                        self._make_room()
                    sending.check_soft_time_limit()
                    held = self._next()
                    if held is None:
                        break
                    self._process(held)
                    held = None
                self._settle_all()
                # A limit that struck during the last sends: this task was out of time too (said so).
                sending.check_soft_time_limit()
            except SoftTimeLimitExceeded:
                self._out_of_time(held)
                return {}
            except BaseException:  # e.g. a database that stays down: what was sent is recorded if it can be
                with contextlib.suppress(Exception):
                    self._settle_all()
                raise
        return {pk: self.done[pk] for pk in self.ids if pk in self.done}

    def _load(self, ids: list[int], lease: dt.datetime, *, quarantine_at_once: bool) -> None:
        if self.recorder and not self.ids:
            sending.new_task()
        events = selectors.claimed_events(ids, configurations=self.configurations)
        for event in events:
            if event.sensitive_ctx:  # the one place the worker opens sensitive values (in memory)
                sensitive.reveal(event)
        self.ids += ids
        self.waiting += [Claim(event_id=event.pk, lease=lease, event=event) for event in events]
        if not self.loaded_at:
            self.loaded_at = time.monotonic()
        if quarantine_at_once:
            self.quarantine.read(_event_addresses(events))
        enrichment.read_for_events(self.enrichment, events)

    def _next(self) -> Claim | None:
        """The next event, its lease renewed if it runs short (with those of the events still
        waiting), and read again if the batch has been running for a while; more due events are
        claimed when few wait and the batch may keep going."""
        if len(self.waiting) < self.capacity and time.monotonic() < self.keep_going_until:
            ids, lease = with_database_retries(
                lambda: claims.claim_due([], now=timezone.now(), limit=self.limit)
            )
            if ids:
                self._load(ids, lease, quarantine_at_once=True)
            else:
                self.keep_going_until = 0.0  # nothing more is due: the task ends with these
        if not self.waiting:
            return None
        now = timezone.now()
        leases = {claim.lease for claim in self.waiting}  # one per claim: the check is per lease
        short = [lease for lease in leases if not claims.lease_is_ample(lease, now=now)]
        for lease in short:
            holding = [claim for claim in self.waiting if claim.lease == lease]
            renewal = functools.partial(claims.renew_leases, [claim.event_id for claim in holding], lease)
            kept, renewed = with_database_retries(renewal)
            for claim in holding:
                claim.lease = renewed
            # A lease that ran out: the event is another worker's now.
            lost = {claim.event_id for claim in holding if claim.event_id not in kept}
            self.waiting = [claim for claim in self.waiting if claim.event_id not in lost]
        if short:
            self._flush()  # decisions waiting for a group are not left to age either
        if self.waiting and time.monotonic() - self.loaded_at > BATCH_REFRESH_SECONDS:
            self.configurations = {}  # read again too: a pause, an unpublish, a new version
            waiting = [claim.event_id for claim in self.waiting]
            events = {e.pk: e for e in selectors.claimed_events(waiting, configurations=self.configurations)}
            self.waiting = [claim for claim in self.waiting if claim.event_id in events]
            for claim in self.waiting:
                claim.event = events[claim.event_id]
            self.loaded_at = time.monotonic()
        return self.waiting.pop(0) if self.waiting else None

    def _process(self, held: Claim) -> None:
        event = held.event
        assert event is not None
        with event_context(pkey=event.pkey, organization=event.configuration.organization.slug):
            try:
                prepared = _prepare(
                    event, held, self.quarantine, settle=self._settle, enrichments=self.enrichment
                )
            except LeaseLost:
                logger.warning("event %s: lease lost before sending; another worker has it", event.pkey)
                self.done[event.pk] = None
                return
            except SoftTimeLimitExceeded:
                raise  # the batch ends this event (`_out_of_time`)
            except Exception as error:  # a bug must not strand the event in `processing` until the lease ends
                prepared = _internal_error(event, error)
        if isinstance(prepared, Decision):
            self._decided(_Decided(event, held, prepared, sent=False))
        else:
            self._send(prepared)

    # --- The send window --------------------------------------------------------------------------
    # A send holds its place in the window from its hand-over until its record commits: on its
    # sender (`sending`), then decided (`unrecorded`), then in the record being written
    # (`recording`, on the recorder thread when there is one). The threads tell the task what
    # finished through one queue (`finished`).

    @property
    def in_flight(self) -> int:
        return len(self.sending) + self.sent_unrecorded + self.sent_recording

    def _send(self, send: _Send) -> None:
        while self.in_flight >= self.capacity:
            self._make_room()
        if message_services.sends_wait_on_network(send.channel, send.event.organization_id):
            future = sending.submit(self.capacity, _render_and_send, send)
            self.sending[future] = send
            future.add_done_callback(self.finished.put)
            self._pump()
            return
        outcome: futures.Future[Decision] = futures.Future()
        try:
            outcome.set_result(_render_and_send(send))
        except SoftTimeLimitExceeded:
            raise  # the batch ends this event (`_out_of_time`)
        except Exception as error:
            outcome.set_exception(error)
        self._sent(send, outcome)
        self._pump()

    def _take_finished(self, *, wait: bool = False, timeout: float | None = None) -> bool:
        """Take what finished (waiting for one thing first, with `wait`); False if nothing did."""
        try:
            future = self.finished.get(timeout=timeout) if wait else self.finished.get_nowait()
        except queue.Empty:
            return False
        while True:
            if future in self.sending:
                self._sent(self.sending.pop(future), future)
            elif future in self.recording:
                self._reap(future)
            try:
                future = self.finished.get_nowait()
            except queue.Empty:
                return True

    def _pump(self) -> None:
        """Without waiting: take what finished, and hand the decisions taken meanwhile to the
        recorder if it is idle (so that a group is whatever finished while the last was written)."""
        self._take_finished()
        if self.recorder and len(self.recording) < sending.RECORDERS and self.unrecorded:
            self._start_record()

    def _make_room(self) -> None:
        """The window is full: wait until a send's record commits."""
        if not self.recorder:  # recorded here, as a group of at least half the window when the
            # sends in flight finish within GROUP_PATIENCE_SECONDS
            self._collect(max(1, self.capacity // 2) - self.sent_unrecorded)
            self._write_here()
            return
        self._pump()
        while self.in_flight >= self.capacity:
            self._take_finished(wait=True)
            self._pump()

    def _collect(self, wanted: int) -> None:
        """Wait until `wanted` more sends finished (or all did), for at most GROUP_PATIENCE_SECONDS
        once one has."""
        target = len(self.sending) - min(wanted, len(self.sending))
        deadline = None
        while len(self.sending) > target:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._take_finished(wait=True, timeout=timeout):
                break  # patience ran out, and something finished
            if deadline is None and self.unrecorded:
                deadline = time.monotonic() + GROUP_PATIENCE_SECONDS

    def _settle(self, *, organization_id: int, channel: str, address: str) -> None:
        """Wait for the outcome of a send in flight to this address, if there is one."""
        key = (organization_id, channel, address.lower())
        while any(send.address == key for send in self.sending.values()):
            self._take_finished(wait=True)

    def _settle_all(self) -> None:
        """Wait for every send in flight, and record every decision."""
        while self.sending:
            self._take_finished(wait=True)
        self._flush()

    def _sent(self, send: _Send, outcome: futures.Future[Decision]) -> None:
        try:
            decision = outcome.result()
            sent = decision.delivery is not None
        except Exception as error:  # a bug, or a backend failing unexpectedly: it may have gone out
            with event_context(pkey=send.event.pkey, organization=send.event.configuration.organization.slug):
                decision = _internal_error(send.event, error)
            sent = True
        self._decided(_Decided(send.event, send.claim, decision, sent=sent))

    def _decided(self, decided: _Decided) -> None:
        paths = getattr(decided.event, "sensitive_paths", None)
        if paths:  # a reason never quotes a sensitive value (stored, shown, logged)
            decided.decision = _scrubbed(decided.decision, decided.event.ctx, paths)
        self.unrecorded.append(decided)
        self.sent_unrecorded += decided.sent
        entry = decided.decision.quarantine
        if entry is not None:  # the next events of the batch see it at once
            self.quarantine.add(
                organization_id=entry.organization_id, channel=entry.channel, address=entry.address
            )

    # --- Recording ----------------------------------------------------------------------------------

    def _take_group(self) -> tuple[list[_Decided], list[Move], int]:
        group, self.unrecorded = self.unrecorded, []
        sent, self.sent_unrecorded = self.sent_unrecorded, 0
        return group, [_move(d.event, d.claim, d.decision) for d in group], sent

    def _write_here(self) -> None:
        """Record the decisions taken so far, on the task's thread."""
        if self.unrecorded:
            group, moves, _ = self._take_group()
            self._report(group, _write(group, moves))

    def _start_record(self) -> None:
        """Hand the decisions taken to the recorder: the statement of the group built here, so
        that the recorder thread only makes the round trip."""
        group, moves, sent = self._take_group()
        statement = None
        plain = [
            move for decided, move in zip(group, moves, strict=True) if decided.decision.quarantine is None
        ]
        if plain:
            statement = recording_statement(plain)
        future = sending.record(_write, group, moves, statement)
        self.recording[future] = (group, sent)
        self.sent_recording += sent
        future.add_done_callback(self.finished.put)

    def _reap(self, future: futures.Future[tuple[set[int], set[int]]]) -> None:
        """The outcome of a record (waiting for it if need be)."""
        group, sent = self.recording.pop(future)
        try:
            written = future.result()
        except Exception:  # _write reports its own failures; this would be a bug in it
            logger.exception("%d event(s) could not be recorded; the sweep will retry them", len(group))
            written = (set(), {d.event.pk for d in group})
        self.sent_recording -= sent
        self._report(group, written)

    def _flush(self) -> None:
        """Record every decision taken, and wait until it is."""
        if not self.recorder:
            self._write_here()
            return
        if self.unrecorded:
            self._start_record()
        while self.recording:
            self._reap(next(iter(self.recording)))

    def _report(self, group: list[_Decided], written: tuple[set[int], set[int]]) -> None:
        moved, failed = written
        for decided in group:
            pk = decided.event.pk
            self.done[pk] = None if pk in failed else _report(decided, moved=pk in moved)

    def _out_of_time(self, held: Claim | None) -> None:
        """The task's soft time limit struck (EVENT_TASK_SOFT_TIME_LIMIT_SECONDS): the batch stops.

        The sends in flight are waited for and recorded. The event in hand is tried again later, as
        after any temporary failure (its attempt counted, so a limit that keeps striking ends in
        `deliveryFailed`). The events still waiting go back to `pending` as they were before this
        batch claimed them, for the sweep to hand them out again at once, instead of waiting for
        their lease to run out.
        """
        limit = settings.EVENT_TASK_SOFT_TIME_LIMIT_SECONDS
        reason = f"the worker's task ran out of time (EVENT_TASK_SOFT_TIME_LIMIT_SECONDS, {limit:g} s)"
        logger.warning("%s: %d event(s) go back to the queue", reason, len(self.waiting) + (held is not None))
        try:
            self._settle_all()
            if held is not None and held.event is not None:
                event, claim = held.event, held
                with_database_retries(lambda: _record(event, claim, retry_or_fail(event, reason)))
            for lease in {claim.lease for claim in self.waiting}:
                ids_left = [claim.event_id for claim in self.waiting if claim.lease == lease]
                with_database_retries(
                    lambda: claims.release_unprocessed(
                        ids_left,  # noqa: B023 - called at once
                        lease=lease,  # noqa: B023
                        reason=f"not processed: {reason}",
                    )
                )
        except Exception:  # the leases still run out, and the sweep takes the events over then
            logger.exception("the events of a batch out of time could not be released")


def _event_addresses(events: list[Event]) -> Iterator[tuple[int, str, str]]:
    """The addresses these events carry, to read their quarantine at once (profile targeting's
    addresses are known later, and looked up one by one)."""
    for event in events:
        if event.configuration.targeting == Targeting.EVENT:
            address = message_services.recipient_for(event=event, profile=None).address
            yield event.organization_id, event.configuration.channel, address


def _scrubbed(decision: Decision, ctx: dict[str, Any], paths: list[sensitive.Path]) -> Decision:
    outcome = decision.outcome
    last_error = decision.last_error
    return dataclasses.replace(
        decision,
        outcome=Outcome(outcome.status, sensitive.scrub(outcome.reason, ctx, paths)),
        last_error=sensitive.scrub(last_error, ctx, paths) if last_error else last_error,
    )


def _internal_error(event: Event, error: Exception) -> Decision:
    # The frames, not the message: an exception's text may quote the event's data.
    frames = "".join(traceback.format_tb(error.__traceback__))
    logger.error("event %s failed unexpectedly: %s\n%s", event.pkey, error.__class__.__name__, frames)
    return retry_or_fail(event, f"internal error: {error.__class__.__name__}")


def _move(event: Event, held: Claim, decision: Decision) -> Move:
    """The decision as the move that records it, with the delivery of its send."""
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
            displayed=sent.displayed,
        )
    return Move(
        event.pk,
        decision.outcome.status,
        S.PROCESSING,
        reason=decision.outcome.reason,
        code=decision.outcome.code,
        lease=held.lease,
        delivery=delivery,
        fields=decision.event_fields(),
    )


def _write(
    group: list[_Decided], moves: list[Move], statement: str | None = None
) -> tuple[set[int], set[int]]:
    """Write a group's records (on the recorder thread, or the task's): the moves without a
    quarantine in one statement (`statement`, when it was built already), each quarantine with
    its move. Returns the ids that moved and those that could not be written (their leases run out
    and the sweep retries them)."""
    moved: set[int] = set()
    failed: set[int] = set()
    plain = [move for decided, move in zip(group, moves, strict=True) if decided.decision.quarantine is None]
    if plain:
        try:
            if statement is not None:
                moved |= with_database_retries(lambda: write_recording(statement))
            else:
                moved |= with_database_retries(lambda: record_moves(plain))
        except Exception:  # e.g. a database that stays down
            logger.exception("%d event(s) could not be recorded; the sweep will retry them", len(plain))
            failed |= {move.event_id for move in plain}
    for decided, move in zip(group, moves, strict=True):
        entry = decided.decision.quarantine
        if entry is None:
            continue
        try:
            if with_database_retries(lambda: _write_quarantining(move, entry)):  # noqa: B023 - called at once
                moved.add(move.event_id)
        except Exception:
            logger.exception("event %s could not be recorded; the sweep will retry it", decided.event.pkey)
            failed.add(move.event_id)
    return moved, failed


def _write_quarantining(move: Move, entry: QuarantineEntry | None) -> bool:
    """One move, with its quarantine (an upsert) in the same transaction."""
    with transaction.atomic() if entry else contextlib.nullcontext():
        if entry:
            message_services.quarantine(
                organization_id=entry.organization_id,
                channel=entry.channel,
                address=entry.address,
                reason=entry.reason,
            )
        return bool(record_moves([move]))


def _record(event: Event, held: Claim, decision: Decision) -> bool:
    """One decision: the delivery, the quarantine and the final status, atomically.

    A message that was sent is recorded even if our lease was lost meanwhile, so that whoever holds
    the event now sees the delivery and does not send it again.
    """
    return _write_quarantining(_move(event, held, decision), decision.quarantine)


def _report(decided: _Decided, *, moved: bool) -> str | None:
    """The log line and the metrics of a recorded decision; its status (None: the lease was lost)."""
    event, outcome = decided.event, decided.decision.outcome
    context: dict[str, Any] = {"pkey": event.pkey, "organization": event.configuration.organization.slug}
    if not moved:
        logger.warning("event %s: lease lost before recording %s", event.pkey, outcome.status, extra=context)
        return None
    status = outcome.status
    logger.info(
        "event %s -> %s", event.pkey, status, extra={"status": status, "reason": outcome.reason, **context}
    )
    if status == S.PENDING:
        RETRIES.labels(event.configuration.channel).inc()
    elif status in FINAL_STATUSES:
        EVENT_LATENCY.labels(status).observe((timezone.now() - event.created_at).total_seconds())
    return status


def _render_and_send(send: _Send) -> Decision:
    """Render and send (on a sender thread, or the task's): no database here, only memory and the
    channel's server. A template beyond a bound of rendering, or an event that expired meanwhile,
    is decided without a send."""
    event, profile = send.event, send.profile
    try:
        enriched = send.enriched
        rendered = message_services.compose(
            version=send.version,
            event=event,
            profile=profile,
            ctx=enriched.ctx if enriched is not None else None,
            joined_profile=enriched.profile if enriched is not None else None,
        )
        displayed = _displayed(send, rendered)
    except SoftTimeLimitExceeded:
        raise
    except TemplateError as error:  # beyond a bound of rendering (RENDER_*): the reason names it
        reason = f"the message could not be rendered: {error}"
        outcome = Outcome(S.DELIVERY_FAILED, reason, reasons.RENDER_FAILED)
        return Decision(outcome, profile=profile, message_version=send.version, last_error=reason)
    except Exception as error:  # a template that fails at render time will fail every time
        reason = f"the message could not be rendered: {error}"
        outcome = Outcome(S.DELIVERY_FAILED, reason, reasons.RENDER_FAILED)
        return Decision(outcome, profile=profile, message_version=send.version)
    if expired(event):  # never send after expiration, even if rendering took long
        outcome = Outcome(S.TOO_OLD, "expired before it could be sent", reasons.EXPIRED)
        return Decision(outcome, profile=profile, message_version=send.version)
    started = time.monotonic()
    with providers.send_deadline(_send_deadline(send.claim.lease)):
        result = message_services.send(
            channel=send.channel,
            rendered=rendered,
            recipient=send.recipient,
            organization_id=send.event.organization_id,
        )
    return _sent_decision(send, rendered, result, int((time.monotonic() - started) * 1000), displayed)


def _send_deadline(lease: dt.datetime) -> float:
    """The end of this claim's lease in time.monotonic(): a send starts only if the longest it can
    take (its provider's `max_send_seconds`) ends before (messages.providers.fits), a slot of a
    provider's rate limit is waited for only as long as the send still fits after it, and the
    lease is renewed before the send unless that much of it is left (claims.lease_is_ample)."""
    return time.monotonic() + (lease - timezone.now()).total_seconds()


def _displayed(send: _Send, rendered: RenderedMessage) -> RenderedMessage:
    """What the delivery keeps to show: the message as sent, or, for an event with sensitive values,
    rendered again with them masked (selectors.ctx_for_display)."""
    event = send.event
    paths = getattr(event, "sensitive_paths", None)
    if not paths:
        return rendered
    enriched = send.enriched
    return message_services.compose(
        version=None,  # the content without tracking: this copy is shown, never sent nor opened
        content=send.version.content,
        event=event,
        profile=send.profile,
        ctx=sensitive.mask(enriched.ctx, paths) if enriched is not None else selectors.ctx_for_display(event),
        joined_profile=enriched.profile if enriched is not None else None,
    )


def _sent_decision(
    send: _Send,
    rendered: RenderedMessage,
    result: SendResult,
    duration_ms: int,
    displayed: RenderedMessage | None = None,
) -> Decision:
    event = send.event
    if result.rate_limited or result.lease_too_short:  # nothing sent: no delivery, attempt not counted
        code = reasons.LEASE_TOO_SHORT if result.lease_too_short else reasons.RATE_LIMITED
        decision = wait_for_rate_limit(
            event, result.provider_response, not_before=result.retry_after, code=code
        )
        return dataclasses.replace(decision, profile=send.profile, message_version=send.version)
    delivery = DeliveryRecord(
        message=send.message,
        version=send.version,
        recipient=send.recipient,
        result=result,
        duration_ms=duration_ms,
        rendered=rendered,
        displayed=displayed if displayed is not rendered else None,
    )
    answer = mask_addresses(result.provider_response)  # "550 <jane@example.com>: unknown" -> j***@
    if result.sent:
        decision = Decision(Outcome(S.PROCESSED, result.provider_message_id, reasons.SENT), last_error="")
    elif result.outcome == "permanentFailure" and not result.quarantines:  # the message's fault
        code = reasons.provider_rejected(result.provider_response)
        decision = Decision(Outcome(S.DELIVERY_FAILED, answer, code), last_error=answer)
    elif result.outcome == "permanentFailure":
        decision = Decision(
            Outcome(S.DELIVERY_FAILED, answer, reasons.provider_rejected(result.provider_response)),
            last_error=answer,
            quarantine=QuarantineEntry(
                organization_id=event.organization_id,
                channel=send.channel,
                address=send.recipient.address,
                reason=result.provider_response,
            ),
        )
    else:
        decision = retry_or_fail(event, answer, not_before=result.retry_after)
    return decision.with_send(profile=send.profile, version=send.version, delivery=delivery)


def _prepare(
    event: Event,
    held: Claim,
    is_quarantined: QuarantineLookup,
    *,
    settle: Any,
    enrichments: EnrichmentLookup | None = None,
) -> Decision | _Send:
    """What needs the database before the send (route, target, enrich, quarantine, the lease): a
    decision that needs no send, or the send to render and make.

    `settle(organization_id=, channel=, address=)` waits for a send in flight to the same address."""
    if expired(event):
        return Decision(Outcome(S.TOO_OLD, "expired before it could be sent", reasons.EXPIRED))
    if getattr(event, "sensitive_unreadable", False):  # a machine without the key: another may have it
        logger.error("event %s: its sensitive values open with no key of ENCRYPTION_KEYS", event.pkey)
        return retry_or_fail(
            event,
            "its sensitive values open with no key of ENCRYPTION_KEYS",
            code=reasons.SENSITIVE_KEY_MISSING,
        )
    if event.attempts > 1 and selectors.sent_by_earlier_attempt(event):
        # An earlier attempt sent it but died before recording the status: never send twice.
        return Decision(Outcome(S.PROCESSED, "sent by an earlier attempt", reasons.SENT_BY_EARLIER_ATTEMPT))
    configuration = event.configuration
    if configuration.status != EventConfiguration.Status.PUBLISHED:
        reason = f"the event type {configuration.event_id} is not published"
        return Decision(Outcome(S.ROUTING_FAILED, reason, reasons.NOT_PUBLISHED))
    message = configuration.message  # loaded with the event
    if message is None or message.status == TransactionalMessage.Status.DRAFT or message.live_version is None:
        reason = f"no published message for {configuration.event_id}"
        return Decision(Outcome(S.ROUTING_FAILED, reason, reasons.NO_PUBLISHED_MESSAGE))
    if message.status == TransactionalMessage.Status.PAUSED:
        # Not routed: it is routed again at resume, to the version live then (SPEC).
        return Decision(Outcome(S.PAUSED, "the message is paused", reasons.PAUSED))
    # Routed: the version live now is pinned on the event with whatever this attempt decides.
    version = message.live_version
    decided = _targeted(
        event, held, is_quarantined, settle=settle, enrichments=enrichments, message=message, version=version
    )
    if isinstance(decided, Decision) and decided.message_version is None:
        decided = dataclasses.replace(decided, message_version=version)
    return decided


def _targeted(
    event: Event,
    held: Claim,
    is_quarantined: QuarantineLookup,
    *,
    settle: Any,
    enrichments: EnrichmentLookup | None,
    message: TransactionalMessage,
    version: MessageVersion,
) -> Decision | _Send:
    """`_prepare` once the event is routed to `message`'s live version: target, enrich, check the
    quarantine and the typology, renew the lease."""
    configuration = event.configuration
    profile: Profile | None = None
    if configuration.targeting == Targeting.PROFILE:
        profile = selectors.find_profile(event)
        if profile is None:
            reason = "no profile matches the reconciliation key"
            return Decision(Outcome(S.TARGETING_FAILED, reason, reasons.NO_PROFILE))
        rules = typology.rules_for(configuration)
        excluded = typology.screen(configuration=configuration, profile=profile, rules=rules)
        if excluded is not None:  # denylist, profile filters
            return Decision(Outcome(S.IGNORED, excluded.reason, excluded.status_code), profile=profile)
    try:
        enriched = enrichment.enrich(
            schema=configuration.published_schema,
            ctx=event.ctx,
            organization_id=event.organization_id,
            lookup=enrichments if enrichments is not None else EnrichmentLookup(),
        )
    except enrichment.EnrichmentFailed as failed:
        outcome = Outcome(S.TARGETING_FAILED, str(failed), reasons.ENRICHMENT_MISSING)
        return Decision(outcome, profile=profile)
    recipient = message_services.recipient_for(event=event, profile=profile)
    if not recipient.address:
        reason = f"the profile has no {configuration.channel} address"
        return Decision(Outcome(S.TARGETING_FAILED, reason, reasons.NO_ADDRESS), profile=profile)
    organization_id, channel = event.organization_id, configuration.channel
    settle(organization_id=organization_id, channel=channel, address=recipient.address)
    if is_quarantined(organization_id=organization_id, channel=channel, address=recipient.address):
        reason = f"{mask_address(recipient.address)} is quarantined"
        return Decision(Outcome(S.IGNORED, reason, reasons.QUARANTINED), profile=profile)
    # Duplicate and fatigue rules, decided under the profile's lock: profile-based messages only
    # (an event-based one enriched with a profile is neither blocked nor counted).
    if configuration.targeting == Targeting.PROFILE and profile is not None:
        admission = functools.partial(
            typology.admit, event=event, profile=profile, channel=channel, rules=rules, now=timezone.now()
        )
        excluded = with_database_retries(admission)
        if excluded is not None:
            return Decision(Outcome(S.IGNORED, excluded.reason, excluded.status_code), profile=profile)

    # The lease is extended (if it runs short) before the render and the send, which are bounded
    # (RENDER_TIMEOUT_SECONDS, the send's timeouts) well within what `lease_is_ample` leaves.
    send_seconds = message_services.longest_send(channel, organization_id)
    with_database_retries(functools.partial(held.renew, send_seconds=send_seconds))
    return _Send(event, held, message, version, profile, recipient, enriched)
