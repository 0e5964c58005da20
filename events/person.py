"""A person's data on request: everything kept about one email address in one organization, exported
as JSON (`export_person`) or erased (`forget`, the profiles' admin action).

A person's rows: their profile; the events sent to the address or reconciled with the profile (and,
if the profile has a mobile phone, the events sent to it); the deliveries to the address or phone
or of those events, proofs included; the opens and clicks of those deliveries and what their
providers said later (messages.provider_history: they go with them).
The quarantine keeps the address (an address that failed for good must not be sent to again): the
export shows it, `forget` leaves it. Rollups are counts without any address: they keep them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from campaign.models import Organization, Profile, Quarantine
from events import rollups
from events.models import Event, EventStatusChange
from messages import sms_replies
from messages.models import Delivery, SmsReceipt, TrackingHit
from messages.provider_history import provider_history

EMAIL_MAX_LENGTH = 254
CHUNK = 2000
REPORTS_PER_DELIVERY = 100  # what providers said later about one delivery: far more than any sends


class PersonError(ValueError):
    """An address that cannot be a person's (the command line's bad input)."""


@dataclass(frozen=True)
class PersonRows:
    email: str
    profile: Profile | None
    events: QuerySet[Event]
    deliveries: QuerySet[Delivery]
    quarantine: QuerySet[Quarantine]


def checked_email(value: str) -> str:
    email = value.strip()
    if len(email) > EMAIL_MAX_LENGTH:
        raise PersonError(f"EMAIL: at most {EMAIL_MAX_LENGTH} characters.")
    try:
        validate_email(email)
    except ValidationError:
        raise PersonError(f"EMAIL: {value[:80]!r} is not an email address.") from None
    return email


def person_rows(*, organization: Organization, email: str) -> PersonRows:
    email = checked_email(email)
    profile = Profile.objects.filter(organization=organization, email__iexact=email).first()
    addresses = Q(email__iexact=email)
    recipients = Q(recipient__iexact=email)
    if profile is not None:
        addresses |= Q(profile=profile)
        if profile.mobile_phone:
            addresses |= Q(mobile_phone=profile.mobile_phone)
            recipients |= Q(recipient=profile.mobile_phone)
    events = Event.objects.filter(addresses, organization=organization)
    deliveries = Delivery.objects.filter(
        recipients | Q(event_link__event__in=events.values("pk")), organization=organization
    )
    quarantined = [email.lower()] + ([profile.mobile_phone] if profile and profile.mobile_phone else [])
    quarantine = Quarantine.objects.filter(
        organization=organization, address_digest__in=[Quarantine.digest_of(a) for a in quarantined]
    )
    return PersonRows(email, profile, events, deliveries, quarantine)


def _profile_data(profile: Profile) -> dict[str, Any]:
    return {
        "email": profile.email,
        "firstName": profile.first_name,
        "lastName": profile.last_name,
        "mobilePhone": profile.mobile_phone,
        "language": profile.language,
        "optedOut": profile.opted_out,
        "optedOutEmail": profile.opted_out_email,
        "optedOutSms": profile.opted_out_sms,
        "optedOutPush": profile.opted_out_push,
        "blocklisted": profile.blocklisted,
        "testProfile": profile.is_test,
        "data": profile.data,
        "created": profile.created_at,
        "updated": profile.updated_at,
    }


def _chunks(rows: Iterator[Delivery], size: int) -> Iterator[list[Delivery]]:
    chunk: list[Delivery] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def export_person(*, organization: Organization, email: str) -> dict[str, Any]:
    """Everything kept about the person, as JSON-ready values (dates as datetimes)."""
    rows = person_rows(organization=organization, email=email)
    history: dict[int, list[dict[str, Any]]] = {}
    changes = EventStatusChange.objects.filter(event__in=rows.events.values("pk")).order_by(
        "created_at", "id"
    )
    for change in changes.iterator():
        history.setdefault(change.event_id, []).append(
            {
                "from": change.from_status,
                "to": change.to_status,
                "reason": change.reason,
                "code": change.code or None,  # the stable reason code (events.reasons)
                "at": change.created_at,
            }
        )
    events = [
        {
            "PKey": event.pkey,
            "eventId": event.configuration.event_id,
            "status": event.status,
            "email": event.email,
            "mobilePhone": event.mobile_phone,
            "ctx": event.ctx,
            "created": event.created_at,
            "processed": event.processed_at,
            "lastError": event.last_error,
            "history": history.get(event.pk, []),
        }
        for event in rows.events.select_related("configuration").order_by("created_at", "id").iterator()
    ]
    deliveries: list[dict[str, Any]] = []
    chosen = rows.deliveries.select_related("message__configuration").order_by("created_at", "id")
    for chunk in _chunks(chosen.iterator(chunk_size=CHUNK), CHUNK):
        # What the providers said later: an email provider's webhooks, an SMS provider's receipts.
        told: dict[int, list[dict[str, Any]]] = {}
        for report in provider_history(chunk, limit=REPORTS_PER_DELIVERY * len(chunk)).reports:
            told.setdefault(report.delivery_id, []).append(
                {
                    "kind": report.kind,
                    "provider": report.provider,
                    "at": report.occurred_at or report.received_at,
                    "description": report.description,
                    "quarantined": report.quarantined,
                    "status": report.status or None,
                    "errorCode": report.error_code or None,
                }
            )
        deliveries += [
            {
                "created": delivery.created_at,
                "eventId": delivery.message.configuration.event_id,
                "channel": delivery.channel,
                "recipient": delivery.recipient,
                "outcome": delivery.outcome,
                "proof": delivery.is_proof,
                "providerMessageId": delivery.provider_message_id,
                "providerResponse": delivery.provider_response,
                "content": delivery.content,
                "providerEvents": told.get(delivery.pk, []),
            }
            for delivery in chunk
        ]
    hits = TrackingHit.objects.filter(delivery__in=rows.deliveries.values("pk")).select_related("delivery")
    tracking = [
        {
            "kind": hit.kind,
            "at": hit.created_at,
            "url": hit.url,
            "userAgent": hit.user_agent,
            "automated": hit.automated,
            "deliveryProviderMessageId": hit.delivery.provider_message_id,
        }
        for hit in hits.order_by("created_at", "id").iterator()
    ]
    return {
        "organization": organization.slug,
        "email": rows.email,
        "exported": timezone.now(),
        "profile": _profile_data(rows.profile) if rows.profile is not None else None,
        "events": events,
        "deliveries": deliveries,
        "tracking": tracking,
        "quarantine": [
            {"channel": q.channel, "address": q.address, "reason": q.reason, "created": q.created_at}
            for q in rows.quarantine
        ],
    }


def forget_person(*, organization: Organization, email: str) -> dict[str, int]:
    """Erase the person's profile, events, deliveries (with their opens and clicks), in one
    transaction; answers the rows deleted per table, cascades included."""
    rows = person_rows(organization=organization, email=email)
    deleted: dict[str, int] = {}

    def count(result: tuple[int, dict[str, int]]) -> None:
        for label, number in result[1].items():
            deleted[label] = deleted.get(label, 0) + number

    with transaction.atomic():
        # The reports keep the counts (no address in them) of what goes: first, while the events'
        # deliveries, opens and clicks are still there to be counted.
        rollups.retire(rows.events.values_list("pk", flat=True))
        # An SMS receipt that came before its delivery was written is joined to it by message id only
        # (one of this organization, or of none known yet: never another organization's).
        message_ids = rows.deliveries.filter(channel="sms").exclude(provider_message_id="")
        count(
            SmsReceipt.objects.filter(
                sms_replies.unjoined_match(
                    organization.pk, list(message_ids.values_list("provider_message_id", flat=True))
                )
            ).delete()
        )
        # Deliveries next: their query reads the events (through their links).
        count(Delivery.objects.filter(pk__in=list(rows.deliveries.values_list("pk", flat=True))).delete())
        count(rows.events.delete())
        if rows.profile is not None:
            count(Profile.objects.filter(pk=rows.profile.pk).delete())
    return deleted
