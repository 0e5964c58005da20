"""What providers said about deliveries after their sends, as one list in time order: an email
service provider's webhook events (messages.provider_events: ProviderEvent rows) and an SMS
provider's delivery receipts (messages.sms_replies: SmsReceipt rows). The delivery's admin page, the
event's timeline (events.timeline) read it here, so both kinds show in one shape everywhere.

An SMS receipt says the provider's own word (`DELIVRD`, `undelivered`) and an error code; its
`kind` is that word in the email events' vocabulary (ProviderEvent.Kind), and a receipt never
quarantines (a number refused for good is quarantined by the send's answer: messages.channels).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from django.db.models import Q

from messages import sms_replies
from messages.models import Delivery, ProviderEvent, SmsReceipt

HISTORY_MAX = 500  # reports of each kind read at once (a timeline's bound)
Kind = ProviderEvent.Kind
# SMPP's receipt states (SMPP 3.4 appendix B) and Twilio's MessageStatus values, any case.
RECEIPT_KINDS = {
    "delivrd": Kind.DELIVERED,
    "delivered": Kind.DELIVERED,
    "read": Kind.DELIVERED,
    "undeliv": Kind.FAILED,
    "undelivered": Kind.FAILED,
    "failed": Kind.FAILED,
    "expired": Kind.FAILED,
    "deleted": Kind.FAILED,
    "canceled": Kind.FAILED,
    "rejectd": Kind.REJECTED,
}


@dataclass(frozen=True)
class ProviderReport:
    """One thing a provider said later about a delivery, whichever its channel."""

    delivery_id: int
    source: str  # "webhook" (an email provider's event) or "smsReceipt"
    provider: str
    kind: str  # a ProviderEvent.Kind value
    status: str  # an SMS receipt's own word ("" for an email provider's event)
    error_code: str
    quarantined: bool
    description: str  # as the provider said it (addresses not masked: the reader masks)
    occurred_at: dt.datetime | None  # when the provider says it happened, if it says
    received_at: dt.datetime  # when it reached us: the list's order

    @property
    def kind_label(self) -> str:
        return str(Kind(self.kind).label)


@dataclass(frozen=True)
class ProviderHistory:
    reports: list[ProviderReport]
    truncated: bool  # more than `limit` of a kind: the oldest `limit` are read


def receipt_kind(status: str) -> str:
    return RECEIPT_KINDS.get(status.lower(), Kind.OTHER)


def _unjoined_delivery(by_message_id: dict[tuple[int, str], int], row: SmsReceipt) -> int:
    if row.organization_id is not None:
        return by_message_id[(row.organization_id, row.message_id)]
    return max(pk for (_org, message_id), pk in by_message_id.items() if message_id == row.message_id)


def provider_history(deliveries: Sequence[Delivery], *, limit: int = HISTORY_MAX) -> ProviderHistory:
    """What the providers said later about these deliveries, oldest first: their email provider
    events and their SMS receipts (also those that arrived before their delivery was written, found
    by the provider's message id, as sms_replies.receipts_of finds them). Three queries at most."""
    if not deliveries:
        return ProviderHistory([], False)
    ids = [d.pk for d in deliveries]
    # A receipt not joined yet belongs to the latest SMS delivery with its message id (and its
    # organization: receipts of two organizations' SMSCs may carry the same id).
    by_message_id = {
        (d.organization_id, d.provider_message_id): d.pk
        for d in sorted(deliveries, key=lambda d: d.pk)
        if d.channel == "sms" and d.provider_message_id
    }
    events = list(
        ProviderEvent.objects.filter(delivery__in=ids)
        .order_by("created_at", "id")
        .only("delivery_id", "kind", "provider", "quarantined", "description", "occurred_at", "created_at")[
            : limit + 1
        ]
    )
    receipts: list[SmsReceipt] = []
    if any(d.channel == "sms" for d in deliveries):
        match = Q(delivery__in=ids)
        # An unjoined receipt is of the delivery's organization (or of none known yet).
        ids_by_organization: dict[int, list[str]] = {}
        for d in deliveries:
            if d.channel == "sms" and d.provider_message_id:
                ids_by_organization.setdefault(d.organization_id, []).append(d.provider_message_id)
        for organization_id, message_ids in ids_by_organization.items():
            match |= sms_replies.unjoined_match(organization_id, message_ids)
        receipts = list(
            SmsReceipt.objects.filter(match)
            .order_by("received_at", "id")
            .only(
                "delivery_id",
                "organization_id",
                "provider",
                "message_id",
                "status",
                "error_code",
                "received_at",
            )[: limit + 1]
        )
    truncated = len(events) > limit or len(receipts) > limit
    reports = (
        [
            ProviderReport(
                delivery_id=row.delivery_id,
                source="webhook",
                provider=row.provider,
                kind=row.kind,
                status="",
                error_code="",
                quarantined=row.quarantined,
                description=row.description,
                occurred_at=row.occurred_at,
                received_at=row.created_at,
            )
            for row in events[:limit]
        ]
        + [
            ProviderReport(
                delivery_id=row.delivery_id or _unjoined_delivery(by_message_id, row),
                source="smsReceipt",
                provider=row.provider.split(":", 1)[0],  # the kind ("smpp"), not its owner's key
                kind=receipt_kind(row.status),
                status=row.status,
                error_code=row.error_code,
                quarantined=False,
                description=f"{row.status} (error {row.error_code})" if row.error_code else row.status,
                occurred_at=None,
                received_at=row.received_at,
            )
            for row in receipts[:limit]
        ]
    )
    reports.sort(key=lambda r: r.received_at)
    return ProviderHistory(reports, truncated)
