"""Reads: the published configuration behind an endpoint, an event by PKey, events due for work,
and what processing an event reads (the claimed events, the quarantine, the profile, earlier sends)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import OuterRef, Q, QuerySet, Subquery, TextField
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast, Lower
from django.utils import timezone

from campaign import generations
from campaign.models import CustomResourceRow, Organization, Profile, Quarantine
from events import sensitive
from events.models import Event, EventConfiguration, EventStatusChange, event_name_from_id
from messages.models import Delivery

# What the API reads of a published configuration.
PUBLISHED_FIELDS = (
    "id",
    "organization_id",
    "name",
    "channel",
    "targeting",
    "status",
    "published_schema",
    "published_at",
)
# The generation every change of a configuration's publication bumps (events.publication).
CONFIGURATIONS = "configurations"
CONFIGURATION_CACHE_SECONDS = 60.0
_published = generations.ProcessCache(CONFIGURATIONS)


def cached_published_configuration(*, organization_id: int, event_id: str) -> EventConfiguration | None:
    """The published configuration behind an endpoint as this process last read it (within
    GENERATION_CHECK_SECONDS of a publication change anywhere), or None. What it says may be a
    moment old: ingest's INSERT is conditional on the configuration still being published as read
    (events.services.ingest), so an unpublish still takes the endpoint down at once. The
    instance is shared by this process's threads: read it, never change it."""
    generation = _published.generation()
    key = (organization_id, event_id)
    configuration = _published.get(key, generation)
    if configuration is generations.ABSENT:
        configuration = published_configuration(organization_id=organization_id, event_id=event_id)
        if configuration is not None:  # an unknown id is not remembered: the keys stay bounded
            _published.put(key, configuration, generation=generation, seconds=CONFIGURATION_CACHE_SECONDS)
    return configuration


def published_configuration(*, organization_id: int, event_id: str) -> EventConfiguration | None:
    """The published configuration behind an endpoint, or None (the endpoint does not exist), read now."""
    name = event_name_from_id(event_id)
    if name is None:
        return None
    return (
        EventConfiguration.objects.filter(
            organization_id=organization_id, name=name, status=EventConfiguration.Status.PUBLISHED
        )
        .only(*PUBLISHED_FIELDS)
        .order_by()  # unique (organization, name): the model's ordering would only add a join and a sort
        .first()
    )


def configuration_for_api(*, organization_id: int, event_id: str) -> EventConfiguration | None:
    """Any configuration (published or not) of the organization behind an event id, for GETs."""
    name = event_name_from_id(event_id)
    if name is None:
        return None
    return EventConfiguration.objects.filter(organization_id=organization_id, name=name).order_by().first()


def event_by_pkey(*, configuration: EventConfiguration, pkey: str) -> Event | None:
    return (
        Event.objects.filter(
            configuration=configuration, organization_id=configuration.organization_id, pkey=pkey
        )
        .select_related("configuration", "configuration__organization")
        .order_by()  # PKey is unique
        .first()
    )


def events_of_configuration(
    *, configuration: EventConfiguration, status: str | None = None
) -> QuerySet[Event]:
    events = Event.objects.filter(
        organization_id=configuration.organization_id, configuration=configuration
    ).select_related("configuration", "configuration__organization")
    if status:
        events = events.filter(status=status)
    return events.order_by("-id")


def recent_events(*, configuration: EventConfiguration, limit: int) -> list[Event]:
    """The last `limit` events of a configuration (by arrival, newest first), with what rendering
    them reads loaded (their configuration and organization)."""
    return list(events_of_configuration(configuration=configuration)[: max(0, limit)])


def due_pending_events(*, now: dt.datetime | None = None) -> QuerySet[Event]:
    """Pending events whose time has come: scheduled, retried, or whose enqueue was lost."""
    now = now or timezone.now()
    return Event.objects.filter(status=Event.Status.PENDING, next_attempt_at__lte=now).order_by(
        "next_attempt_at"
    )


def expired_leases(*, now: dt.datetime | None = None) -> QuerySet[Event]:
    now = now or timezone.now()
    # No ordering: the model's newest-first would walk the whole history by date (event_lease_idx).
    return Event.objects.filter(status=Event.Status.PROCESSING, lease_expires_at__lt=now).order_by()


def expired_waiting_events(*, now: dt.datetime | None = None) -> QuerySet[Event]:
    now = now or timezone.now()
    return Event.objects.filter(
        Q(status__in=[Event.Status.PENDING, Event.Status.PAUSED]), expiration_at__lt=now
    ).order_by()  # by status (event_due_idx), not by date through the whole history


def organization_by_slug(slug: str) -> Organization | None:
    return Organization.objects.filter(slug=slug).first()


# --- What processing an event reads ----------------------------------------------------------------


# What processing reads of an event: its identity, recipient, data, attempts and dates that count.
PROCESSING_FIELDS = (
    "pkey",
    "organization",
    "configuration",
    "email",
    "mobile_phone",
    "push_platform",
    "registration_token",
    "application",
    "ctx",
    "sensitive_ctx",
    "status",
    "attempts",
    "expiration_at",
    "created_at",
)


def claimed_events(
    event_ids: list[int], *, configurations: dict[int, EventConfiguration] | None = None
) -> list[Event]:
    """The claimed events with everything processing reads about them, in this order (an id no
    longer there is left out): the events in one query, and their configurations (with the
    organization, the message and its live version) in another, each read once however many of
    the events share it (a burst is mostly one event type: one schema and content decoded).
    `configurations` keeps those read for the next call (a batch's next claim). Only the columns
    processing reads are loaded (each date parsed costs, and a batch reads many rows)."""
    events = Event.objects.only(*PROCESSING_FIELDS).order_by().in_bulk(event_ids)
    known = configurations if configurations is not None else {}
    missing = {event.configuration_id for event in events.values()} - known.keys()
    if missing:
        known.update(
            EventConfiguration.objects.select_related("organization", "message__live_version")
            .order_by()
            .in_bulk(missing)
        )
    for event in events.values():
        event.configuration = known[event.configuration_id]
    return [events[pk] for pk in event_ids if pk in events]


def ctx_for_display(event: Event) -> dict[str, Any]:
    """An event's data for what is shown rather than sent (a delivery's stored content, a preview
    from a real event, a draft tried on real events): its sensitive values masked (`"***"`). As
    stored, `ctx` is masked already; in the worker, which opened it (events.sensitive.reveal), it is
    masked again here."""
    paths = getattr(event, "sensitive_paths", None)
    return sensitive.mask(event.ctx, paths) if paths else event.ctx


def sent_by_earlier_attempt(event: Event) -> bool:
    """An earlier attempt sent the message (and died before recording the event's status)."""
    return event.deliveries.filter(outcome=Delivery.Outcome.SENT).exists()


# The profile's own fields (Profile.STANDARD_COLUMNS); an email matches whatever its case.
PROFILE_COLUMNS = {
    name: column + ("__iexact" if column == "email" else "")
    for name, column in Profile.STANDARD_COLUMNS.items()
}


def find_profile(event: Event) -> Profile | None:
    """The profile whose reconciliation field equals the event's key, in the event's organization."""
    configuration = event.configuration
    value = event.ctx.get(configuration.reconciliation_event_field)
    if value in (None, ""):
        return None
    profiles = Profile.objects.filter(organization_id=event.organization_id)
    column = PROFILE_COLUMNS.get(configuration.reconciliation_profile_field)
    if column:
        return profiles.filter(**{column: value}).order_by("pk").first()
    return (
        profiles.filter(**{f"data__{configuration.reconciliation_profile_field}": value})
        .order_by("pk")
        .first()
    )


@dataclass
class QuarantineLookup:
    """Whether an address is quarantined: the addresses a batch's events carry are read in one query;
    any other (a profile's address) is looked up on its own."""

    checked: dict[tuple[int, str], set[str]] = field(default_factory=dict)
    quarantined: dict[tuple[int, str], set[str]] = field(default_factory=dict)

    @classmethod
    def for_addresses(cls, addresses: Iterable[tuple[int, str, str]]) -> QuarantineLookup:
        """Read these (organization id, channel, address) at once: one query per organization and channel."""
        lookup = cls()
        lookup.read(addresses)
        return lookup

    def read(self, addresses: Iterable[tuple[int, str, str]]) -> None:
        """Read these too, at once (those not read yet)."""
        unread: dict[tuple[int, str], set[str]] = {}
        for organization_id, channel, address in addresses:
            key = (organization_id, channel)
            if address and address.lower() not in self.checked.get(key, ()):
                unread.setdefault(key, set()).add(address.lower())
        for (organization_id, channel), addresses_read in unread.items():
            by_digest = {Quarantine.digest_of(address): address for address in addresses_read}
            found = Quarantine.objects.filter(
                organization_id=organization_id, channel=channel, address_digest__in=by_digest
            ).values_list("address_digest", flat=True)
            self.checked.setdefault((organization_id, channel), set()).update(addresses_read)
            self.quarantined.setdefault((organization_id, channel), set()).update(by_digest[d] for d in found)

    def add(self, *, organization_id: int, channel: str, address: str) -> None:
        """An address this batch just quarantined (a permanent failure): the next events see it."""
        key = (organization_id, channel)
        self.checked.setdefault(key, set()).add(address.lower())
        self.quarantined.setdefault(key, set()).add(address.lower())

    def __call__(self, *, organization_id: int, channel: str, address: str) -> bool:
        address, key = address.lower(), (organization_id, channel)
        if address in self.checked.get(key, ()):
            return address in self.quarantined[key]
        return Quarantine.objects.filter(
            organization_id=organization_id, channel=channel, address_digest=Quarantine.digest_of(address)
        ).exists()


# (resource id, key) and (organization id, profile field, value): what enrichments join.
RowKey = tuple[int, str]
ProfileKey = tuple[int, str, str]


def profile_key(organization_id: int, profile_field: str, value: Any) -> ProfileKey:
    """How a joined profile is looked for: an email matches whatever its case."""
    text = str(value)
    return (organization_id, profile_field, text.lower() if profile_field == "email" else text)


@dataclass
class EnrichmentLookup:
    """The rows the enrichments of a batch's events join (events.enrichment), read at once: the rows
    of every custom resource in one query for the whole batch, whatever the number of items; the
    joined profiles in one query per organization and profile field. A key not read with the batch
    (a configuration published meanwhile) is read on its own."""

    rows: dict[RowKey, dict[str, Any] | None] = field(default_factory=dict)
    profiles: dict[ProfileKey, Profile | None] = field(default_factory=dict)

    def read(self, rows: Iterable[RowKey], profiles: Iterable[ProfileKey]) -> None:
        """Read these too, at once (those not read yet)."""
        unread_rows = {key for key in rows if key not in self.rows}
        if unread_rows:
            by_resource: dict[int, set[str]] = {}
            for resource_id, row_key in unread_rows:
                by_resource.setdefault(resource_id, set()).add(row_key)
            wanted = Q()
            for resource_id, keys in by_resource.items():
                wanted |= Q(resource_id=resource_id, key__in=sorted(keys))
            for wanted_row in unread_rows:
                self.rows[wanted_row] = None
            for resource_id, key, data in CustomResourceRow.objects.filter(wanted).values_list(
                "resource_id", "key", "data"
            ):
                self.rows[(resource_id, key)] = data
        unread_profiles: dict[tuple[int, str], set[str]] = {}
        for wanted_profile in profiles:
            if wanted_profile not in self.profiles:
                organization_id, profile_field, text = wanted_profile
                unread_profiles.setdefault((organization_id, profile_field), set()).add(text)
        for (organization_id, profile_field), values in unread_profiles.items():
            for value in values:
                self.profiles[(organization_id, profile_field, value)] = None
            found = Profile.objects.filter(organization_id=organization_id).order_by("-pk")
            column = Profile.STANDARD_COLUMNS.get(profile_field)
            if column == "email":
                found = found.annotate(email_lower=Lower("email")).filter(email_lower__in=sorted(values))
            elif column:
                found = found.filter(**{f"{column}__in": sorted(values)})
            else:
                found = found.filter(**{f"data__{profile_field}__in": sorted(values)})
            for profile in found:  # the lowest pk last: it wins, as find_profile's does
                found_value = profile.as_context().get(profile_field)
                if found_value not in (None, ""):
                    self.profiles[profile_key(organization_id, profile_field, found_value)] = profile

    def row(self, resource_id: int, key: str) -> dict[str, Any] | None:
        if (resource_id, key) not in self.rows:
            self.read([(resource_id, key)], [])
        return self.rows[(resource_id, key)]

    def profile(self, key: ProfileKey) -> Profile | None:
        if key not in self.profiles:
            self.read([], [key])
        return self.profiles[key]


CTX_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63}){0,4}$")
CTX_SEARCH_MAX = 255


def with_last_reason(queryset: QuerySet[Event]) -> QuerySet[Event]:
    """Each event with `last_reason`: the reason of its latest status change (why it failed, was
    ignored or is retried)."""
    latest = EventStatusChange.objects.filter(event=OuterRef("pk")).order_by("-created_at", "-id")
    return queryset.annotate(last_reason=Subquery(latest.values("reason")[:1]))


def search_ctx(queryset: QuerySet[Event], query: str) -> QuerySet[Event]:
    """Events whose ctx matches `query`: `key=value` (a dotted path, e.g. `order.id=42`) compares that
    key's value, case-insensitively; anything else is looked for in the whole ctx as JSON text.

    Both scan the rows the other filters leave (no index on ctx): narrow the period first on large
    histories. Works on PostgreSQL (jsonb cast to text, ->> for keys) and SQLite (JSON1)."""
    query = query.strip()[:CTX_SEARCH_MAX]
    key, equals, value = query.partition("=")
    if equals and CTX_KEY.match(key.strip()):
        path = key.strip().split(".")
        target: Any = "ctx"
        for name in path[:-1]:
            target = KeyTransform(name, target)
        return queryset.annotate(ctx_value=KeyTextTransform(path[-1], target)).filter(
            ctx_value__iexact=value.strip()
        )
    return queryset.annotate(ctx_text=Cast("ctx", TextField())).filter(ctx_text__icontains=query)
