"""A message's statuses and what the editor needs from the event side.

A message's status changes only here (`move`): an allowed-moves table, a conditional UPDATE, and a
history row naming the action and who did it (the admin shows them). The workflows that move an
event type and its message together (publish, pause, resume, unpublish, republish) belong to the
events app (events.publication), which hands them in at start-up (`hand_in`), together with the
event's rules the editor checks sample data with: messages never imports events.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from messages.models import MessageStatusChange, MessageVersion, TransactionalMessage

S = TransactionalMessage.Status

ALLOWED: dict[str, frozenset[str]] = {
    # to-status: the statuses it may come from
    S.PUBLISHED: frozenset({S.DRAFT, S.PUBLISHED, S.PAUSED}),
    S.PAUSED: frozenset({S.PUBLISHED}),
    S.DRAFT: frozenset({S.PUBLISHED, S.PAUSED, S.DRAFT}),
}


class PublicationError(Exception):
    """A configuration or message that cannot be published as it stands; `errors` says why."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = list(errors)


class SampleDataError(Exception):
    """Sample data that the event would refuse: `field` names the value, as the API would."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def move(
    message: TransactionalMessage,
    *,
    to: str,
    action: str,
    user: Any = None,
    live_version: MessageVersion | None = None,
    note: str = "",
) -> bool:
    """Move the message to `to` if the table allows it from where it stands; record who and why."""
    sources = list(ALLOWED[to])
    changes: dict[str, Any] = {"status": to, "updated_at": timezone.now()}
    if live_version is not None:
        changes["live_version"] = live_version
    with transaction.atomic():
        previous = (
            TransactionalMessage.objects.filter(pk=message.pk, status__in=sources)
            .values_list("status", flat=True)
            .first()
        )
        if previous is None:
            return False
        TransactionalMessage.objects.filter(pk=message.pk, status=previous).update(**changes)
        MessageStatusChange.objects.create(
            message_id=message.pk,
            from_status=previous,
            to_status=to,
            action=action,
            user=user if getattr(user, "pk", None) else None,
            version_number=live_version.number if live_version is not None else None,
            note=note[:2000],
        )
    message.status = to
    if live_version is not None:
        message.live_version = live_version
    return True


def delete(message: TransactionalMessage) -> None:
    """Delete the message with its versions, deliveries and history (its event type is going). The
    live version refuses deletion while the message stands, so the message lets it go first: the
    status goes back to draft with it (the table's one rule, a live message has a version), and the
    row is gone in the same transaction."""
    with transaction.atomic():
        TransactionalMessage.objects.filter(pk=message.pk).update(live_version=None, status=S.DRAFT)
        message.delete()


def record_action(message: TransactionalMessage, *, action: str, user: Any = None, note: str = "") -> None:
    """An action that changes no status (a proof) in the same history."""
    status = TransactionalMessage.objects.filter(pk=message.pk).values_list("status", flat=True).first()
    MessageStatusChange.objects.create(
        message_id=message.pk,
        from_status=status or message.status,
        to_status=status or message.status,
        action=action,
        user=user if getattr(user, "pk", None) else None,
        note=note[:2000],
    )


@dataclass(frozen=True)
class PublicationEffects:
    """What a publication move will do beyond the message's status, told on its confirmation page
    before anyone presses the button (the events side counts them with the workflows' own rules)."""

    endpoint_down: bool = False  # the event's REST endpoint stops answering (POSTs get 404)
    endpoint_back: bool = False  # the endpoint an Unpublish of the message took down answers again
    events_kept_paused: int = 0  # queued events kept `paused`, sent on Resume
    events_failed: int = 0  # queued events that end `routingFailed`
    events_released: int = 0  # paused events sent (or `tooOld` if expired)
    message_unpublished: bool = False  # the message goes back to draft with its event type
    draft_replaced: bool = False  # the draft's content is overwritten
    draft_changes_lost: bool = False  # ... and it held edits no version has
    refusal: str = ""  # why the move cannot be made as things stand ("" if it can)


@dataclass(frozen=True)
class RealEvent:
    """One real event as a display render needs it (a draft tried on real traffic): its data for
    display (events.selectors.ctx_for_display) joined as the worker joins it (events.enrichment),
    its profile and language; or `skipped`, why the worker would send it nothing (no profile, a
    required join that found nothing)."""

    pkey: str
    created_at: Any  # datetime
    ctx: dict[str, Any]
    profile: Any = None  # campaign.models.Profile of a profile-based event
    joined_profile: dict[str, Any] | None = None  # a profile join's fields
    language: str = ""
    skipped: str = ""


@dataclass(frozen=True)
class EventSide:
    """What the events app hands in: its workflows and the event's rules for sample data."""

    publish: Callable[..., MessageVersion]  # (message=, user=)
    pause: Callable[..., TransactionalMessage]  # (message=, user=)
    resume: Callable[..., TransactionalMessage]  # (message=, user=)
    unpublish: Callable[..., TransactionalMessage]  # (message=, user=)
    republish: Callable[..., MessageVersion]  # (version=, user=)
    schema_of: Callable[[TransactionalMessage], dict[str, Any]]
    sample_ctx: Callable[[dict[str, Any]], dict[str, Any]]
    check_ctx: Callable[[dict[str, Any], Any], dict[str, Any]]  # raises SampleDataError
    # A test profile's own sample data for a message's event (message, profile) -> ctx or None.
    sample_of: Callable[[TransactionalMessage, Any], dict[str, Any] | None]
    # Sample data joined to the custom resources' rows as an event's would be (message, ctx) -> ctx.
    enrich_sample: Callable[[TransactionalMessage, dict[str, Any]], dict[str, Any]]
    pause_effects: Callable[[TransactionalMessage], PublicationEffects]
    unpublish_effects: Callable[[TransactionalMessage], PublicationEffects]
    republish_effects: Callable[[MessageVersion], PublicationEffects]
    # The last `limit` events of the message's configuration, newest first, for display renders.
    recent_events: Callable[[TransactionalMessage, int], list[RealEvent]]


_event_side: EventSide | None = None


def hand_in(event_side: EventSide) -> None:
    global _event_side
    _event_side = event_side


def event_side() -> EventSide:
    if _event_side is None:
        raise RuntimeError("the events app hands in its workflows when it is ready (INSTALLED_APPS)")
    return _event_side
