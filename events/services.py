"""Writes about event configurations and events: publication rules, duplication, ingest, and
handing stored events to the workers (enqueueing, for the dispatcher and the sweep).

Every rule of publishing an event type lives here; the admin, the CLI and the API call these.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, transaction
from django.utils import timezone

from campaign import encryption
from campaign.metrics import EVENTS_RECEIVED
from campaign.models import Profile
from events import sensitive, statements
from events.models import (
    EVENT_ID_MAX_LENGTH,
    EVENT_NAME_MAX_LENGTH,
    NAME_VALIDATOR,
    Enrichment,
    Event,
    EventConfiguration,
    EventField,
    Targeting,
    event_name_from_id,
    format_event_id,
)
from events.schema import SchemaError, ValidatedEvent, build_schema, validate_ctx
from messages.channels import channel
from messages.models import TransactionalMessage

logger = logging.getLogger(__name__)

RESERVED_NAMES = frozenset({"loop"})


class IdempotencyConflict(Exception):
    """The Idempotency-Key was already used, within the window, for another request body."""


def normalise_event_name(name: str) -> str:
    """The admin may type `EVTcartAbandonment` or `cartAbandonment`: both name `cartAbandonment`."""
    name = (name or "").strip()
    return event_name_from_id(name) or name


def event_name_errors(name: str) -> list[str]:
    if not name:
        return ["The event needs a name."]
    errors = []
    if len(name) > EVENT_NAME_MAX_LENGTH:
        errors.append(
            f"The event id {format_event_id(name)} is longer than {EVENT_ID_MAX_LENGTH} characters."
        )
    try:
        NAME_VALIDATOR(name)
    except ValidationError:
        errors.append(f"The name '{name}' must use letters, digits and '_', starting with a letter.")
    return errors


class Problem(str):
    """A reason, in words an administrator reads, naming the model field at fault (or none): the
    admin shows the text, the configuration file names the place in the file."""

    field: str | None

    def __new__(cls, text: str, field: str | None = None) -> Problem:
        problem = super().__new__(cls, text)
        problem.field = field
        return problem


def configuration_errors(
    configuration: EventConfiguration,
    fields: list[EventField] | None = None,
    enrichments: list[Enrichment] | None = None,
) -> list[Problem]:
    """Everything that stops a configuration from being published: the publication's rules, which
    the admin's form and the configuration file's import check too."""
    errors: list[Problem] = []
    if fields is None:
        fields = list(configuration.fields.all())
    if enrichments is None:
        enrichments = list(configuration.enrichments.select_related("resource")) if configuration.pk else []
    errors.extend(Problem(text, "name") for text in event_name_errors(configuration.name))
    top_level = {f.name for f in fields if not f.collection}
    collections = {f.collection for f in fields if f.collection}
    for clash in sorted(top_level & collections):
        errors.append(Problem(f"'{clash}' is both a field and a collection.", "fields"))
    for reserved in sorted((top_level | collections) & RESERVED_NAMES):
        errors.append(Problem(f"'{reserved}' is a reserved name.", "fields"))
    for field in fields:
        if field.max_length and field.type != "text":
            errors.append(
                Problem(f"Field '{field}': a maximum length applies to text fields only.", "fields")
            )
        if field.values and not isinstance(field.values, list):
            errors.append(Problem(f"Field '{field}': allowed values must be a JSON list.", "fields"))
    event_field = configuration.reconciliation_event_field
    profile_field = configuration.reconciliation_profile_field
    if configuration.targeting == Targeting.PROFILE:
        if not event_field or not profile_field:
            errors.append(
                Problem(
                    "Profile targeting needs a reconciliation: an event field and a profile field.",
                    "reconciliation",
                )
            )
        elif event_field not in top_level:
            errors.append(
                Problem(
                    f"The reconciliation field '{event_field}' is not a field of the event.",
                    "reconciliation_event_field",
                )
            )
        if (
            profile_field
            and profile_field not in Profile.STANDARD_FIELDS
            and not profile_field.isidentifier()
        ):
            errors.append(
                Problem(
                    f"The profile field '{profile_field}' is not a valid field name.",
                    "reconciliation_profile_field",
                )
            )
    elif event_field or profile_field:
        errors.append(Problem("A reconciliation is only for profile targeting.", "reconciliation"))
    errors.extend(enrichment_errors(configuration, fields, enrichments))
    return errors


def enrichment_errors(
    configuration: EventConfiguration, fields: list[EventField], enrichments: list[Enrichment]
) -> list[Problem]:
    """The joins' rules (events.enrichment): each names fields the event has, a resource of the
    configuration's organization, and a name for the joined row that no item field has."""
    errors: list[Problem] = []
    top_level = {f.name for f in fields if not f.collection}
    by_collection: dict[str, set[str]] = {}
    for f in fields:
        if f.collection:
            by_collection.setdefault(f.collection, set()).add(f.name)
    names: set[tuple[str, str]] = set()
    profile_joins = 0
    for enrichment in enrichments:
        if enrichment.kind == Enrichment.Kind.PROFILE:
            profile_joins += 1
            if configuration.targeting == Targeting.PROFILE:
                errors.append(
                    Problem(
                        "A profile enrichment is for event-based messages: profile targeting "
                        "already has its profile (the reconciliation).",
                        "enrichments",
                    )
                )
            if enrichment.event_field not in top_level:
                errors.append(
                    Problem(
                        f"The enrichment's event field '{enrichment.event_field}' is not a field "
                        "of the event.",
                        "enrichments",
                    )
                )
            field = enrichment.profile_field
            if not field or (field not in Profile.STANDARD_FIELDS and not field.isidentifier()):
                errors.append(
                    Problem(
                        f"The enrichment's profile field '{field}' is not a valid field name.", "enrichments"
                    )
                )
            continue
        resource = enrichment.resource
        if resource is None:
            errors.append(Problem("A resource enrichment needs a custom resource.", "enrichments"))
            continue
        if configuration.organization_id and resource.organization_id != configuration.organization_id:
            errors.append(Problem(f"The resource '{resource}' is not of this organization.", "enrichments"))
        items = by_collection.get(enrichment.collection)
        if items is None:
            errors.append(
                Problem(
                    f"The enrichment's collection '{enrichment.collection}' is not a collection "
                    "of the event.",
                    "enrichments",
                )
            )
            continue
        if enrichment.event_field not in items:
            errors.append(
                Problem(
                    f"The enrichment's key field '{enrichment.event_field}' is not a field of "
                    f"{enrichment.collection}.",
                    "enrichments",
                )
            )
        name = enrichment.row_name
        if name in items:
            errors.append(
                Problem(
                    f"The enrichment's name '{name}' is a field of {enrichment.collection} already: "
                    "choose another.",
                    "enrichments",
                )
            )
        if (enrichment.collection, name) in names:
            errors.append(
                Problem(f"Two enrichments of {enrichment.collection} are both named '{name}'.", "enrichments")
            )
        names.add((enrichment.collection, name))
    if profile_joins > 1:
        errors.append(Problem("At most one profile enrichment per event.", "enrichments"))
    return errors


def checked_profile_sample(
    *, profile: Profile, configuration: EventConfiguration, ctx: Any
) -> dict[str, Any]:
    """A test profile's sample data for an event type, checked with the API's own rules against the
    schema the message is written with (the published one, else the configuration as it stands):
    SchemaError naming the field (`ctx.items[1].price`) otherwise."""
    if not profile.is_test:
        raise SchemaError("profile", "sample data is for test profiles only")
    if profile.organization_id != configuration.organization_id:
        raise SchemaError("profile", "the profile and the event type belong to different organizations")
    size = len(orjson.dumps(ctx))
    if size > settings.API_MAX_BODY_BYTES:
        raise SchemaError("ctx", f"at most {settings.API_MAX_BODY_BYTES} bytes of JSON (the API's limit)")
    return validate_ctx(configuration.published_schema or build_schema(configuration), ctx)


def default_message_content(schema: dict[str, Any]) -> dict[str, str]:
    """A first draft of the message that lists the event's fields, so a marketer starts from data."""
    return channel(schema["channel"]).default_content(
        label=schema["eventId"],
        fields=[f["name"] for f in schema.get("fields", [])],
        collections=schema.get("collections", []),
    )


def create_message(
    *, configuration: EventConfiguration, draft: dict[str, Any] | None = None
) -> TransactionalMessage:
    """Make the configuration's message (a draft with `draft`'s fields, on its channel) and link it
    from the configuration, which declares the relation (events above messages)."""
    fields = {**channel(configuration.channel).tracking_fields(), **(draft or {})}
    message = TransactionalMessage.objects.create(channel=configuration.channel, **fields)
    configuration.message = message
    configuration.save(update_fields=["message"])
    return message


def duplicate_configuration(
    *, configuration: EventConfiguration, name: str | None = None
) -> EventConfiguration:
    """Copy a configuration and its message as drafts, under a free name."""
    limit = EVENT_NAME_MAX_LENGTH
    stem, suffix = (name, "") if name else (configuration.name, "Copy")

    def fitted(tail: str) -> str:  # shorten the stem, never the distinguishing tail
        return stem[: limit - len(tail)] + tail

    candidate, counter = fitted(suffix), 2
    siblings = EventConfiguration.objects.filter(organization=configuration.organization)
    while siblings.filter(name=candidate).exists():
        candidate, counter = fitted(f"{suffix}{counter}"), counter + 1
    # A label of its own, numbered as the name is, so lists tell the copy from its original.
    label_tail = " (copy)" if counter == 2 else f" (copy {counter - 1})"
    label_limit = EventConfiguration._meta.get_field("label").max_length or 200
    label = (configuration.label or configuration.event_id)[: label_limit - len(label_tail)] + label_tail
    with transaction.atomic():
        copy = EventConfiguration.objects.create(
            organization=configuration.organization,
            name=candidate,
            label=label,
            channel=configuration.channel,
            targeting=configuration.targeting,
            reconciliation_event_field=configuration.reconciliation_event_field,
            reconciliation_profile_field=configuration.reconciliation_profile_field,
            typology=configuration.typology,
        )
        EventField.objects.bulk_create(
            [
                EventField(
                    configuration=copy,
                    collection=f.collection,
                    name=f.name,
                    label=f.label,
                    type=f.type,
                    required=f.required,
                    max_length=f.max_length,
                    values=f.values,
                    sensitive=f.sensitive,
                    position=f.position,
                )
                for f in configuration.fields.all()
            ]
        )
        message = TransactionalMessage.objects.filter(configuration=configuration).first()
        if message is not None:
            create_message(
                configuration=copy,
                draft={key: getattr(message, key) for key in TransactionalMessage.DRAFT_FIELDS},
            )
    return copy


def request_fingerprint(*, configuration: EventConfiguration, body: Any) -> str:
    # Numbers arrive as Decimal (campaign.bounds): their text, so no two bodies share a fingerprint.
    canonical = orjson.dumps([configuration.event_id, body], option=orjson.OPT_SORT_KEYS, default=str)
    if sensitive.has_sensitive(configuration.published_schema):  # keyed: no guess of a value matches it
        return encryption.keyed_digest(canonical)
    return hashlib.sha256(canonical).hexdigest()


def _previous_idempotent_event(*, organization_id: int, key: str, fingerprint: str) -> Event | None:
    """The event an Idempotency-Key already made within the window, or None (expired keys are freed)."""
    existing = Event.objects.filter(organization_id=organization_id, idempotency_key=key).first()
    if existing is None:
        return None
    window = dt.timedelta(seconds=settings.IDEMPOTENCY_WINDOW_SECONDS)
    if existing.created_at < timezone.now() - window:
        Event.objects.filter(pk=existing.pk, idempotency_key=key).update(idempotency_key=None)
        return None
    if existing.request_fingerprint != fingerprint:
        raise IdempotencyConflict(key)
    return existing


def ingest(
    *,
    configuration: EventConfiguration,
    validated: ValidatedEvent,
    body: Any = None,
    idempotency_key: str | None = None,
) -> tuple[Event, bool]:
    """Store an accepted event (`pending`, not yet handed to a worker) in one INSERT, if its
    configuration is still published as `configuration` says (the one the event was validated
    against); ConfigurationChanged otherwise, and nothing is stored. Nothing is sent to the broker
    from here: the dispatcher hands stored events to the workers once they are committed (and the
    sweep any it missed).

    Returns the event and whether it is new; a repeated Idempotency-Key returns the first event.
    """
    fingerprint = request_fingerprint(configuration=configuration, body=body) if idempotency_key else ""
    if idempotency_key:
        previous = _previous_idempotent_event(
            organization_id=configuration.organization_id, key=idempotency_key, fingerprint=fingerprint
        )
        if previous is not None:
            _check_still_published(configuration)
            return previous, False
    now = timezone.now()
    scheduled_at = validated.scheduled_at
    ctx, sealed = validated.ctx, ""
    schema = configuration.published_schema
    if schema and schema.get("sensitiveFields"):  # one lookup for an event type with none
        ctx, sealed = sensitive.seal(schema, ctx)
    event = Event(
        organization_id=configuration.organization_id,
        configuration=configuration,
        **validated.recipient,
        ctx=ctx,
        sensitive_ctx=sealed,
        scheduled_at=scheduled_at,
        expiration_at=validated.expiration_at,
        next_attempt_at=scheduled_at if scheduled_at is not None and scheduled_at > now else now,
        enqueued_at=None,  # undispatched: the dispatcher's (or the sweep's) to hand over
        idempotency_key=idempotency_key or None,
        request_fingerprint=fingerprint,
    )
    # Without an Idempotency-Key the INSERT cannot conflict: it runs alone, committed at once (one
    # round trip, no BEGIN/COMMIT). With a key, a savepoint lets a lost race answer the winner.
    try:
        with transaction.atomic() if idempotency_key else contextlib.nullcontext():
            _insert_if_published(event, configuration)
    except IntegrityError:
        if not idempotency_key:
            raise
        # Another request with the same key won the race: answer with its event.
        previous = _previous_idempotent_event(
            organization_id=configuration.organization_id, key=idempotency_key, fingerprint=fingerprint
        )
        if previous is None:
            raise
        _check_still_published(configuration)
        return previous, False
    EVENTS_RECEIVED.labels(configuration.event_id).inc()
    return event, True


class ConfigurationChanged(Exception):
    """The configuration is no longer published as the event was validated against: unpublished,
    or published again (perhaps with another schema). Nothing was stored."""


def _insert_if_published(event: Event, configuration: EventConfiguration) -> None:
    sql, params = statements.insert_event_if_published_sql(event, published_at=configuration.published_at)
    database = connections[DEFAULT_DB_ALIAS]
    with database.cursor() as cursor:
        cursor.execute(sql, params)
        inserted = cursor.fetchone()
    if inserted is None:
        raise ConfigurationChanged(configuration.event_id)
    event.pk = inserted[0]
    event._state.adding, event._state.db = False, database.alias


def _check_still_published(configuration: EventConfiguration) -> None:
    """An Idempotency-Key's answer replays a stored event: only while the endpoint is up, as published."""
    if not EventConfiguration.objects.filter(
        pk=configuration.pk,
        status=EventConfiguration.Status.PUBLISHED,
        published_at=configuration.published_at,
    ).exists():
        raise ConfigurationChanged(configuration.event_id)


def enqueue_events(event_ids: list[int]) -> None:
    """Hand events to the broker, up to EVENT_CLAIM_BATCH per task. A failure loses nothing: the
    events are stored, and clearing `enqueued_at` lets the next sweep pick them up."""
    from events.tasks import process_events

    size = max(1, settings.EVENT_CLAIM_BATCH)
    failed: list[int] = []
    for start in range(0, len(event_ids), size):
        chunk = event_ids[start : start + size]
        try:
            process_events.apply_async(args=[chunk], queue=settings.CELERY_TRANSACTIONAL_QUEUE)
        except Exception:  # the broker is down or unreachable: the sweep will recover
            logger.warning("could not enqueue events %s; the sweep will retry", chunk, exc_info=True)
            failed.extend(chunk)
    if failed:
        Event.objects.filter(pk__in=failed, status=Event.Status.PENDING).update(enqueued_at=None)


SENDABLE_AGAIN = frozenset({Event.Status.DELIVERY_FAILED, Event.Status.ROUTING_FAILED})


class CannotSendAgain(Exception):
    """Only an event that ended deliveryFailed or routingFailed is sent again."""


def send_again(*, event: Event) -> Event:
    """A new event (its own PKey and status) with the failed one's data, stored as ingest stores an
    accepted POST (the dispatcher hands it out), and linked to it: the failed event keeps its final
    status. Only while its event type is published, as for a POST."""
    if event.status not in SENDABLE_AGAIN:
        raise CannotSendAgain(
            f"Event {event.pkey} is {event.status}: only an event that ended deliveryFailed or routingFailed "
            "is sent again."
        )
    recipient_columns = {key.column for key in channel(event.configuration.channel).recipient_keys}
    validated = ValidatedEvent(
        ctx=sensitive.clear_ctx(event.ctx, event.sensitive_ctx),  # sealed again as it is stored
        recipient={column: getattr(event, column) for column in sorted(recipient_columns)},
        scheduled_at=event.scheduled_at,
        expiration_at=event.expiration_at,
    )
    try:
        with transaction.atomic():
            again, _ = ingest(configuration=event.configuration, validated=validated)
            Event.objects.filter(pk=again.pk).update(sent_again_from=event)
    except ConfigurationChanged:
        raise CannotSendAgain(
            f"Event {event.pkey} cannot be sent again: {event.configuration.event_id} is not published."
        ) from None
    again.sent_again_from = event
    return again
