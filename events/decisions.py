"""What processing an event decided, as typed values: the status it moves to, what is stored on the
event with that move, the delivery to record and the address to quarantine.

Processing (events.pipeline) builds one `Decision` per event and records it in one go; nothing
here touches the database.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils import timezone

from events import reasons
from events.models import Event

if TYPE_CHECKING:
    from campaign.models import Profile
    from messages.channels import Recipient, RenderedMessage, SendResult
    from messages.models import MessageVersion, TransactionalMessage

S = Event.Status


@dataclass(frozen=True)
class Outcome:
    """The status an event moves to, why in words, and why as a stable code (events.reasons)."""

    status: str
    reason: str = ""
    code: str = ""


@dataclass(frozen=True)
class DeliveryRecord:
    """One send that happened (or was tried): recorded as a Delivery row whatever the event's move."""

    message: TransactionalMessage
    version: MessageVersion
    recipient: Recipient
    result: SendResult
    duration_ms: int
    rendered: RenderedMessage | None = (
        None  # what went out: kept on the delivery, with its tracking id and links
    )
    # What the delivery keeps to show when it differs from what went out (sensitive values masked).
    displayed: RenderedMessage | None = None


@dataclass(frozen=True)
class QuarantineEntry:
    """An address that failed for good: its later events are `ignored`."""

    organization_id: int
    channel: str
    address: str
    reason: str


@dataclass(frozen=True)
class Decision:
    """The outcome, what is stored on the event with it, and what else is recorded in the same go.

    A field left at None leaves the event's column as it is: a profile found by an earlier attempt
    stays on the event when a later one fails before targeting.
    """

    outcome: Outcome
    profile: Profile | None = None  # the profile the message went (or would go) to
    # The version the worker routed the event to (pinned at routing, so a paused then resumed event
    # uses the version live at resume): the one sent, or that would have been.
    message_version: MessageVersion | None = None
    last_error: str | None = None  # "" clears an earlier attempt's error
    retry_at: dt.datetime | None = None  # when the next attempt is due (`pending` only)
    delivery: DeliveryRecord | None = None
    quarantine: QuarantineEntry | None = None
    attempts: int | None = None  # the event's count of attempts, rewritten (an attempt not counted)

    def event_fields(self) -> dict[str, Any]:
        """The event's columns written with the move, beside its status."""
        fields: dict[str, Any] = {}
        if self.profile is not None:
            fields["profile"] = self.profile
        if self.message_version is not None:
            fields["message_version"] = self.message_version
        if self.last_error is not None:
            fields["last_error"] = self.last_error
        if self.retry_at is not None:
            # Back in the queue: the sweep enqueues it when due; no lease holds it meanwhile.
            fields.update(next_attempt_at=self.retry_at, enqueued_at=None, lease_expires_at=None)
        if self.attempts is not None:
            fields["attempts"] = self.attempts
        return fields

    def with_send(
        self, *, profile: Profile | None, version: MessageVersion, delivery: DeliveryRecord
    ) -> Decision:
        """This decision about a send that happened: the profile, the version and the delivery join it."""
        return dataclasses.replace(self, profile=profile, message_version=version, delivery=delivery)


def retry_delay(attempt: int) -> float:
    """Exponential backoff, jittered upwards only: base * 2^(attempt-1) * [1, 1.5). Never sooner than
    the operator's EVENT_RETRY_DELAY_SECONDS, and retries of a burst do not hit the server together."""
    base = settings.EVENT_RETRY_DELAY_SECONDS * (2 ** max(0, attempt - 1))
    return base * (1 + 0.5 * random.random())


def retry_or_fail(
    event: Event, error: str, *, not_before: float | None = None, code: str | None = None
) -> Decision:
    """A temporary failure: try again later, unless the attempts or the expiration run out first;
    `not_before`: seconds the server asked to wait (Retry-After), the backoff's least delay; `code`:
    the cause's own reason code for the retry and the final failure (a provider's, by default)."""
    attempts = event.attempts  # read after the claim, which counted this attempt
    if attempts >= settings.EVENT_MAX_ATTEMPTS:
        reason = f"{attempts} attempts failed; last: {error}"
        failed = code or reasons.PROVIDER_UNAVAILABLE
        return Decision(Outcome(S.DELIVERY_FAILED, reason, failed), last_error=error)
    delay = retry_delay(attempts)
    if not_before is not None:
        delay = max(delay, not_before)
    next_attempt_at = timezone.now() + dt.timedelta(seconds=delay)
    if event.expiration_at is not None and next_attempt_at >= event.expiration_at:
        reason = f"expires before the next attempt; last error: {error}"
        return Decision(Outcome(S.TOO_OLD, reason, reasons.EXPIRES_BEFORE_RETRY), last_error=error)
    return Decision(
        Outcome(S.PENDING, f"attempt {attempts} failed, retrying: {error}", code or reasons.RETRY_SCHEDULED),
        last_error=error,
        retry_at=next_attempt_at,
    )


def wait_for_rate_limit(
    event: Event, error: str, *, not_before: float | None = None, code: str = reasons.RATE_LIMITED
) -> Decision:
    """No slot of the providers' rate limits before the claim ended (or, `leaseTooShort`, too
    little of the claim left for one send): nothing was sent. The event goes back to `pending`, due
    when a slot should be free, and this attempt is not counted (the excess of a rate limit waits,
    it does not fail); unless it expires first."""
    next_attempt_at = timezone.now() + dt.timedelta(seconds=not_before or 1.0)
    if event.expiration_at is not None and next_attempt_at >= event.expiration_at:
        reason = f"expires before the next attempt; last error: {error}"
        return Decision(Outcome(S.TOO_OLD, reason, reasons.EXPIRES_BEFORE_RETRY), last_error=error)
    return Decision(
        Outcome(
            S.PENDING,
            f"waiting for the rate limit: {error}" if code == reasons.RATE_LIMITED else f"not sent: {error}",
            code,
        ),
        retry_at=next_attempt_at,
        attempts=max(event.attempts - 1, 0),  # read after the claim, which counted this attempt
    )


def expired(event: Event) -> bool:
    """Past its expiration: never sent from now on."""
    return event.expiration_at is not None and event.expiration_at <= timezone.now()
