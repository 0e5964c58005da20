"""Reads: the published configuration behind an endpoint, an event by PKey, events due for work."""

from __future__ import annotations

import datetime as dt

from django.db.models import Q, QuerySet
from django.utils import timezone

from campaign.models import Organization
from events.models import Event, EventConfiguration, event_name_from_id


def published_configuration(*, organization_id: int, event_id: str) -> EventConfiguration | None:
    """The published configuration behind an endpoint, or None (the endpoint does not exist).

    Not cached on purpose: one indexed lookup, and an unpublish from any process (admin, CLI) must
    take the endpoint down at once.
    """
    name = event_name_from_id(event_id)
    if name is None:
        return None
    return (
        EventConfiguration.objects.filter(
            organization_id=organization_id, name=name, status=EventConfiguration.Status.PUBLISHED
        )
        .only("id", "organization_id", "name", "channel", "targeting", "published_schema", "status")
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


def due_pending_events(*, now: dt.datetime | None = None) -> QuerySet[Event]:
    """Pending events whose time has come: scheduled, retried, or whose enqueue was lost."""
    now = now or timezone.now()
    return Event.objects.filter(status=Event.Status.PENDING, next_attempt_at__lte=now).order_by(
        "next_attempt_at"
    )


def expired_leases(*, now: dt.datetime | None = None) -> QuerySet[Event]:
    now = now or timezone.now()
    return Event.objects.filter(status=Event.Status.PROCESSING, lease_expires_at__lt=now)


def expired_waiting_events(*, now: dt.datetime | None = None) -> QuerySet[Event]:
    now = now or timezone.now()
    return Event.objects.filter(
        Q(status__in=[Event.Status.PENDING, Event.Status.PAUSED]), expiration_at__lt=now
    )


def organization_by_slug(slug: str) -> Organization | None:
    return Organization.objects.filter(slug=slug).first()
