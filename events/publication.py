"""The workflows that move an event type and its message together: publish, unpublish, pause,
resume, republish. They live here, in the app above both, and own the lock order: the
configuration's row before the message's, always, so that no two workflows deadlock.

The configuration's status changes only here (`_move_configuration`: an allowed-moves table and a
history row); the message's through messages.lifecycle; the events' through events.transitions.
The message editor (messages) reaches these workflows through what `hand_in()` gives it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from campaign import generations
from events import dispatch, enrichment, reasons, selectors
from events import schema as event_schema
from events.models import ConfigurationStatusChange, Event, EventConfiguration, ProfileSample, Targeting
from events.schema import SchemaError, build_schema
from events.services import configuration_errors, create_message, default_message_content
from events.transitions import transition_many
from messages import lifecycle
from messages import services as message_services
from messages.lifecycle import PublicationError
from messages.models import MessageVersion, TransactionalMessage

logger = logging.getLogger(__name__)

C = EventConfiguration.Status
M = TransactionalMessage.Status

# The queued events each move takes along: one list for the workflow and for what its
# confirmation page announces (the *_effects functions below).
HELD_BY_PAUSE = [Event.Status.PENDING]  # -> paused
FAILED_BY_UNPUBLISH = [Event.Status.PENDING, Event.Status.PAUSED]  # -> routingFailed
RELEASED_BY_RESUME = [Event.Status.PAUSED]  # -> pending (or tooOld past their expiration)

CONFIGURATION_MOVES: dict[str, frozenset[str]] = {
    # to-status: the statuses it may come from
    C.PUBLISHED: frozenset({C.DRAFT, C.PUBLISHED}),
    C.DRAFT: frozenset({C.PUBLISHED, C.DRAFT}),
}


def _move_configuration(
    configuration: EventConfiguration,
    *,
    to: str,
    action: str,
    user: Any = None,
    note: str = "",
    **fields: Any,
) -> None:
    """Set the (locked) configuration's status and `fields`, with a history row."""
    previous = configuration.status
    if previous not in CONFIGURATION_MOVES[to]:
        raise PublicationError([f"An event type cannot go from {previous} to {to}."])
    configuration.status = to
    for name, value in fields.items():
        setattr(configuration, name, value)
    configuration.save(update_fields=["status", *fields, "updated_at"])
    _forget_cached_configurations()
    ConfigurationStatusChange.objects.create(
        configuration=configuration,
        from_status=previous,
        to_status=to,
        action=action,
        user=user if getattr(user, "pk", None) else None,
        note=note[:2000],
    )


def _forget_cached_configurations() -> None:
    """The API's cached copies of published configurations (events.selectors) are re-read by every
    process within GENERATION_CHECK_SECONDS of the commit, by this one at once. They are a
    shortcut only: ingest's INSERT checks the publication itself."""
    generations.bump(selectors.CONFIGURATIONS)
    generations.forget_checks()
    transaction.on_commit(generations.forget_checks)


def _lock_configuration(pk: int) -> EventConfiguration:
    return EventConfiguration.objects.select_for_update().get(pk=pk)


def _lock_configuration_of(message: TransactionalMessage) -> EventConfiguration:
    """The message's configuration, locked (the link is the configuration's column)."""
    return EventConfiguration.objects.select_for_update().get(message=message)


def _lock_message(message: TransactionalMessage) -> TransactionalMessage:
    return (
        TransactionalMessage.objects.select_for_update(of=("self",))
        .select_related("configuration", "live_version")
        .get(pk=message.pk)
    )


# --- The event type ----------------------------------------------------------------------------


def publish_configuration(*, configuration: EventConfiguration, user: Any = None) -> EventConfiguration:
    """Validate, freeze the schema the API enforces, deploy the endpoint, and make sure the event
    has its transactional message (a draft with default content listing the fields)."""
    with transaction.atomic():
        configuration = _lock_configuration(configuration.pk)
        errors = configuration_errors(configuration)
        if errors:
            raise PublicationError(errors)
        schema = build_schema(configuration)
        _move_configuration(
            configuration,
            to=C.PUBLISHED,
            action="publish",
            user=user,
            published_schema=schema,
            published_at=timezone.now(),
            unpublished_with_message=False,
        )
        if configuration.message_id is None:
            create_message(configuration=configuration, draft=default_message_content(schema))
    logger.info("published %s of %s", configuration.event_id, configuration.organization_id)
    return configuration


def unpublish_configuration(
    *, configuration: EventConfiguration, reason: str = "", with_message: bool = False, user: Any = None
) -> EventConfiguration:
    """Take the endpoint down, return the message to draft, and fail the events still queued.

    `with_message`: the message's Unpublish did it, so publishing the message brings it back."""
    with transaction.atomic():
        configuration = _lock_configuration(configuration.pk)
        _move_configuration(
            configuration,
            to=C.DRAFT,
            action="unpublish",
            user=user,
            note=reason,
            unpublished_with_message=with_message,
        )
        message = TransactionalMessage.objects.filter(configuration=configuration).first()
        if message is not None and message.status != M.DRAFT:
            lifecycle.move(_lock_message(message), to=M.DRAFT, action="unpublish", user=user, note=reason)
        transition_many(
            Q(configuration=configuration),
            to=Event.Status.ROUTING_FAILED,
            sources=FAILED_BY_UNPUBLISH,
            reason=reason or "the event type was unpublished",
            code=reasons.UNPUBLISHED,
        )
    return configuration


# --- The message --------------------------------------------------------------------------------


def publish_message(*, message: TransactionalMessage, user: Any = None) -> MessageVersion:
    """Snapshot the draft as an immutable version and make it live. Events use it from now on.

    Unpublishing a message also took its event's endpoint down; publishing the message again
    brings that endpoint back (an event an administrator unpublished stays down).
    """
    with transaction.atomic():
        configuration = _lock_configuration_of(message)
        message = _lock_message(message)
        if configuration.status != C.PUBLISHED:
            if not configuration.unpublished_with_message:
                raise PublicationError([f"Publish the event {configuration.event_id} before its message."])
            message.configuration = publish_configuration(configuration=configuration, user=user)
        return _make_draft_live(message, user=user, action="publish")


def republish_version(*, version: MessageVersion, user: Any = None) -> MessageVersion:
    """Bring an older version back: its content becomes the draft and is published. The locks are
    taken in the module's order (configuration, then message) before the draft is written."""
    with transaction.atomic():
        _lock_configuration_of(version.message)
        message = _lock_message(version.message)
        message.load_content(version.content)
        message_services.save_draft(message=message)
        return publish_message(message=message, user=user)


def pause_message(*, message: TransactionalMessage, user: Any = None) -> TransactionalMessage:
    """Stop sending: waiting events become `paused`, kept until the message is resumed."""
    with transaction.atomic():
        _lock_configuration_of(message)
        message = _lock_message(message)
        if not lifecycle.move(message, to=M.PAUSED, action="pause", user=user):
            raise PublicationError(
                [f"Only a published message can be paused (this one is {message.status})."]
            )
        transition_many(
            Q(configuration__message=message),
            to=Event.Status.PAUSED,
            sources=HELD_BY_PAUSE,
            reason="the message was paused",
            code=reasons.PAUSED,
        )
    return message


def resume_message(*, message: TransactionalMessage, user: Any = None) -> TransactionalMessage:
    """Send again: paused events that have not expired are processed with the content as it stands
    at resume (edits made during the pause are validated and published as a new version)."""
    with transaction.atomic():
        _lock_configuration_of(message)
        message = _lock_message(message)
        if message.status != M.PAUSED:
            raise PublicationError([f"Only a paused message can be resumed (this one is {message.status})."])
        _make_draft_live(message, user=user, action="resume")
    return message


def unpublish_message(*, message: TransactionalMessage, user: Any = None) -> TransactionalMessage:
    """Back to draft; as in the product we follow, this unpublishes the event type too."""
    if message.status == M.DRAFT:
        raise PublicationError(["The message is not published."])
    unpublish_configuration(
        configuration=message.configuration,
        reason="the message was unpublished",
        with_message=True,
        user=user,
    )
    message.refresh_from_db()
    return message


def _make_draft_live(message: TransactionalMessage, *, user: Any, action: str) -> MessageVersion:
    """Validate the draft, snapshot it as a new version if it changed, make it live, and release
    the events a pause kept. The caller holds the configuration's and the message's locks."""
    version = message_services.snapshot_draft(message=message, user=user)
    was_paused = message.status == M.PAUSED
    lifecycle.move(message, to=M.PUBLISHED, action=action, user=user, live_version=version)
    if was_paused:
        _release_paused_events(message.configuration)
    return version


def _release_paused_events(configuration: EventConfiguration) -> None:
    now = timezone.now()
    of_configuration = Q(configuration_id=configuration.pk)
    transition_many(
        of_configuration & Q(expiration_at__lt=now),
        to=Event.Status.TOO_OLD,
        sources=RELEASED_BY_RESUME,
        reason="expired while the message was paused",
        code=reasons.EXPIRED,
    )
    released = transition_many(
        of_configuration,
        to=Event.Status.PENDING,
        sources=RELEASED_BY_RESUME,
        reason="the message was resumed",
        code=reasons.RESUMED,
        enqueued_at=None,
    )
    # Scheduled events keep their date; those already due go now, handed out by the dispatchers.
    if released:
        dispatch.wake()


# --- What a move will do, said before it is made -------------------------------------------------


def _queued(configuration: EventConfiguration, statuses: Sequence[str]) -> int:
    return Event.objects.filter(configuration_id=configuration.pk, status__in=statuses).count()


def pause_effects(message: TransactionalMessage) -> lifecycle.PublicationEffects:
    """What Pause will do: the queued events are kept, paused."""
    if message.status != M.PUBLISHED:
        return lifecycle.PublicationEffects(
            refusal=f"Only a published message can be paused (this one is {message.status})."
        )
    return lifecycle.PublicationEffects(events_kept_paused=_queued(message.configuration, HELD_BY_PAUSE))


def unpublish_effects(configuration: EventConfiguration) -> lifecycle.PublicationEffects:
    """What unpublishing the event type (or its message, which takes it along) will do."""
    message = TransactionalMessage.objects.filter(configuration=configuration).first()
    return lifecycle.PublicationEffects(
        endpoint_down=configuration.is_published,
        events_failed=_queued(configuration, FAILED_BY_UNPUBLISH),
        message_unpublished=message is not None and message.status != M.DRAFT,
    )


def message_unpublish_effects(message: TransactionalMessage) -> lifecycle.PublicationEffects:
    if message.status == M.DRAFT:
        return lifecycle.PublicationEffects(refusal="The message is not published.")
    return unpublish_effects(message.configuration)


def republish_effects(version: MessageVersion) -> lifecycle.PublicationEffects:
    """What republishing `version` will do: the draft becomes its content, which goes live; a paused
    message is resumed with it, an endpoint the message's Unpublish took down answers again."""
    message = version.message
    configuration = message.configuration
    if not configuration.is_published and not configuration.unpublished_with_message:
        return lifecycle.PublicationEffects(
            refusal=f"Publish the event {configuration.event_id} before its message."
        )
    draft = message.draft_content()
    return lifecycle.PublicationEffects(
        endpoint_back=not configuration.is_published,
        events_released=_queued(configuration, RELEASED_BY_RESUME) if message.status == M.PAUSED else 0,
        draft_replaced=draft != version.content,
        draft_changes_lost=draft != version.content and message.has_unpublished_changes,
    )


# --- What the message editor is handed ----------------------------------------------------------


def schema_of(message: TransactionalMessage) -> dict[str, Any]:
    """The schema a message is written against: the published one, else the configuration as it stands."""
    configuration = message.configuration
    return configuration.published_schema or build_schema(configuration)


def check_sample_ctx(schema: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Sample data checked as the API checks an event's `ctx` (lifecycle.SampleDataError if not)."""
    try:
        return event_schema.validate_ctx(schema, ctx)
    except SchemaError as error:
        raise lifecycle.SampleDataError(error.field, error.message) from None


def sample_of(message: TransactionalMessage, profile: Any) -> dict[str, Any] | None:
    """A test profile's own sample data for the message's event, or None."""
    return (
        ProfileSample.objects.filter(configuration=message.configuration, profile=profile)
        .values_list("ctx", flat=True)
        .first()
    )


def enrich_sample(message: TransactionalMessage, ctx: dict[str, Any]) -> dict[str, Any]:
    """Sample data with the resources' rows joined (a preview shows what an event would)."""
    configuration = message.configuration
    return enrichment.enrich_sample(
        schema=schema_of(message), ctx=ctx, organization_id=configuration.organization_id
    ).ctx


def recent_events(message: TransactionalMessage, limit: int) -> list[lifecycle.RealEvent]:
    """The last `limit` events of the message's configuration as a display render needs them: the
    data for display (selectors.ctx_for_display, never the stored ctx itself) joined as the worker
    joins it (events.enrichment, the published schema's joins), the profile of a profile-based
    event, the language it would be sent in. An event the worker would send nothing (no profile, a
    required join that found nothing) comes with why (`skipped`). The joins look up the display
    data's values: a masked value used as a join key finds no row (shown empty, never in clear)."""
    configuration = message.configuration
    events = selectors.recent_events(configuration=configuration, limit=limit)
    schema = configuration.published_schema or schema_of(message)
    lookup = selectors.EnrichmentLookup()
    displayed = {event.pk: selectors.ctx_for_display(event) for event in events}
    rows, profiles = enrichment.wanted(
        (event.organization_id, schema, displayed[event.pk]) for event in events
    )
    if rows or profiles:
        lookup.read(rows, profiles)
    found: list[lifecycle.RealEvent] = []
    for event in events:
        ctx = displayed[event.pk]
        profile = None
        if configuration.targeting == Targeting.PROFILE:
            profile = selectors.find_profile(event)
            if profile is None:
                found.append(
                    lifecycle.RealEvent(
                        pkey=event.pkey,
                        created_at=event.created_at,
                        ctx=ctx,
                        skipped="no profile matches the reconciliation key",
                    )
                )
                continue
        try:
            enriched = enrichment.enrich(
                schema=schema, ctx=ctx, organization_id=event.organization_id, lookup=lookup
            )
        except enrichment.EnrichmentFailed as failed:
            skipped = lifecycle.RealEvent(
                pkey=event.pkey, created_at=event.created_at, ctx=ctx, skipped=str(failed)
            )
            found.append(skipped)
            continue
        found.append(
            lifecycle.RealEvent(
                pkey=event.pkey,
                created_at=event.created_at,
                ctx=enriched.ctx,
                profile=profile,
                joined_profile=enriched.profile,
                language=message_services.event_language(profile=profile, ctx=enriched.ctx),
            )
        )
    return found


def hand_in() -> None:
    """Give the message editor the workflows and the event's rules (events' AppConfig.ready)."""
    lifecycle.hand_in(
        lifecycle.EventSide(
            publish=publish_message,
            pause=pause_message,
            resume=resume_message,
            unpublish=unpublish_message,
            republish=republish_version,
            schema_of=schema_of,
            sample_ctx=event_schema.sample_ctx,
            check_ctx=check_sample_ctx,
            sample_of=sample_of,
            enrich_sample=enrich_sample,
            pause_effects=pause_effects,
            unpublish_effects=message_unpublish_effects,
            republish_effects=republish_effects,
            recent_events=recent_events,
        )
    )
