"""What SMS providers tell us after a send: delivery receipts (an SMPP `deliver_sm` receipt, a
Twilio status callback) recorded on their delivery, and the replies of the recipients, where a STOP
(or one of the usual keywords) opts the number's profile out of SMS and quarantines the number.

Whose receipt or reply it is comes from the provider it came through: one arriving through an
organization's own provider (its SMPP bind, its Twilio route) is that organization's, and joins or
changes only its deliveries, profiles and quarantine. One arriving through the installation's
providers (the SMPP_* / TWILIO_* settings) names a number or a message id, not an organization: it
is about the deliveries of the organizations that send through the installation's providers (those
with no enabled provider of their own: org_providers.without_own_providers). A reply answers the
latest (non-proof) SMS sent to that number among them; a reply to a number nobody sent to changes
nothing. (An organization that just set up its own providers no longer gets the installation's late
receipts and replies of its older sends: its SMS now leave through its own.)
"""

from __future__ import annotations

import logging
import unicodedata

from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from campaign import addresses
from campaign.models import Profile
from messages import org_providers, services
from messages.models import Delivery, OrganizationProvider, SmsReceipt

logger = logging.getLogger(__name__)

# The keywords carriers and providers treat as an opt-out (first word of the reply, any case,
# accents ignored: ARRÊT is ARRET).
STOP_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "ARRET"})
RAW_MAX_CHARS = 2000


def provider_key(kind: str, organization_id: int | None = None, provider_id: int | None = None) -> str:
    """A receipt's provider: the kind for the installation's ("smpp"), else the organization's
    provider row ("smpp:org5:12"): two SMSCs numbering their messages alike never meet."""
    return kind if organization_id is None else f"{kind}:org{organization_id}:{provider_id}"


def record_receipt(
    *,
    provider: str,
    message_id: str,
    status: str,
    error_code: str = "",
    raw: str = "",
    organization_id: int | None = None,
    provider_name: str = "",
) -> SmsReceipt:
    """Keep a provider's receipt, joined to the SMS delivery with that provider message id if any:
    one of `organization_id` (a receipt of that organization's own provider, `provider_name` the
    name its deliveries carry), else of an organization sending through the installation's providers.
    The same receipt again (an SMSC repeating a deliver_sm whose answer it missed, Twilio repeating a
    callback) is kept once, even when both copies arrive at once: the unique constraint decides, and
    the copy that loses answers with the row that won."""
    same: dict[str, object] = {
        "provider": provider[:64],
        "message_id": message_id[:128],
        "status": status[:32],
        "error_code": error_code[:32],
    }
    if organization_id is not None:
        same["organization_id"] = organization_id
    kept = SmsReceipt.objects.filter(**same).order_by("id").first()
    if kept is not None:
        return kept
    delivery = None
    if message_id:
        found = Delivery.objects.filter(channel="sms", provider_message_id=message_id)
        if organization_id is not None:
            found = found.filter(organization_id=organization_id)
            if provider_name:  # the delivery its provider sent ("" : sent before failover named it)
                found = found.filter(provider__in=[provider_name[:64], ""])
        else:
            found = org_providers.without_own_providers(found, "sms")
        delivery = found.order_by("-id").first()
    owner = organization_id if organization_id is not None else (delivery and delivery.organization_id)
    try:
        with transaction.atomic():  # a savepoint when called inside a transaction
            return SmsReceipt.objects.create(
                **{**same, "organization_id": owner}, delivery=delivery, raw=raw[:RAW_MAX_CHARS]
            )
    except IntegrityError:
        return SmsReceipt.objects.filter(**same).order_by("id").first() or SmsReceipt.objects.get(
            **{**same, "organization_id": owner}
        )


def of_another_organization(organization_id: int, message_id: str) -> bool:
    """Whether this globally unique message id (a Twilio SID) is a delivery of another organization
    and none of this one: a callback on this organization's route about it is not its to record."""
    found = Delivery.objects.filter(channel="sms", provider_message_id=message_id)
    return (
        found.exclude(organization_id=organization_id).exists()
        and not found.filter(organization_id=organization_id).exists()
    )


def unjoined_match(organization_id: int, message_ids: list[str]) -> Q:
    """The receipts not joined yet (arrived before their delivery was written) with these message
    ids that may be this organization's: its own; and the installation's whose owner is not known,
    only while it sends SMS through the installation's providers (record_receipt's rule: another
    SMSC's receipt with the same message id is not its to see, nor to forget)."""
    whose = Q(organization_id=organization_id)
    if not OrganizationProvider.objects.filter(
        organization_id=organization_id, channel="sms", enabled=True
    ).exists():
        whose |= Q(organization__isnull=True)
    return Q(delivery__isnull=True, message_id__in=message_ids) & whose


def receipts_of(delivery: Delivery) -> QuerySet[SmsReceipt]:
    """The receipts of a delivery: joined to it, or carrying its message id (one that arrived
    before the delivery was written), of its organization or of no known one yet."""
    match = Q(delivery=delivery)
    if delivery.provider_message_id:
        match |= unjoined_match(delivery.organization_id, [delivery.provider_message_id])
    return SmsReceipt.objects.filter(match)


def is_stop(text: str) -> bool:
    words = text.strip().split()
    if not words:
        return False
    first = unicodedata.normalize("NFKD", words[0]).encode("ascii", "ignore").decode().upper()
    return first.strip(".!") in STOP_KEYWORDS


def reply_received(*, sender: str, text: str, organization_id: int | None = None) -> bool:
    """A recipient's reply: a STOP opts the profile(s) with that number out of SMS and quarantines
    the number, in the organization that last sent it an SMS (or the one given: a reply that came
    through that organization's own provider: the number's delivery need not be its latest, nor
    exist). Whether it did."""
    if not is_stop(text):
        return False
    try:
        number = addresses.phone_number(sender if sender.startswith("+") else f"+{sender}")
    except ValueError:
        logger.info("SMS reply from an unusable number ignored", extra={"sender": sender[:64]})
        return False
    latest = organization_id
    if latest is None:
        latest = (
            org_providers.without_own_providers(
                Delivery.objects.filter(channel="sms", recipient=number, is_proof=False), "sms"
            )
            .order_by("-id")
            .values_list("organization_id", flat=True)
            .first()
        )
    if latest is None:
        return False
    Profile.objects.filter(organization_id=latest, mobile_phone=number).update(
        opted_out_sms=True, updated_at=timezone.now()
    )
    services.quarantine(organization_id=latest, channel="sms", address=number, reason="STOP reply")
    return True
