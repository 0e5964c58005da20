"""What SMS providers tell us after a send: delivery receipts (an SMPP `deliver_sm` receipt, a
Twilio status callback) recorded on their delivery, and the replies of the recipients, where a STOP
(or one of the usual keywords) opts the number's profile out of SMS and quarantines the number.

A reply names a phone number, not an organization: it answers the latest SMS sent to that number,
so the organization of that number's latest (non-proof) SMS delivery is the one whose profile is
opted out and whose quarantine gets the number. A reply to a number nobody sent to changes nothing.
"""

from __future__ import annotations

import logging
import unicodedata

from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from campaign import addresses
from campaign.models import Profile
from messages import services
from messages.models import Delivery, SmsReceipt

logger = logging.getLogger(__name__)

# The keywords carriers and providers treat as an opt-out (first word of the reply, any case,
# accents ignored: ARRÊT is ARRET).
STOP_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "ARRET"})
RAW_MAX_CHARS = 2000


def record_receipt(
    *, provider: str, message_id: str, status: str, error_code: str = "", raw: str = ""
) -> SmsReceipt:
    """Keep a provider's receipt, joined to the SMS delivery with that provider message id if any.
    The same receipt again (an SMSC repeating a deliver_sm whose answer it missed, Twilio repeating a
    callback) is kept once, even when both copies arrive at once: the unique constraint decides, and
    the copy that loses answers with the row that won."""
    same = {
        "provider": provider[:16],
        "message_id": message_id[:128],
        "status": status[:32],
        "error_code": error_code[:32],
    }
    kept = SmsReceipt.objects.filter(**same).first()
    if kept is not None:
        return kept
    delivery = (
        Delivery.objects.filter(channel="sms", provider_message_id=message_id).order_by("-id").first()
        if message_id
        else None
    )
    try:
        with transaction.atomic():  # a savepoint when called inside a transaction
            return SmsReceipt.objects.create(**same, delivery=delivery, raw=raw[:RAW_MAX_CHARS])
    except IntegrityError:
        return SmsReceipt.objects.get(**same)


def receipts_of(delivery: Delivery) -> QuerySet[SmsReceipt]:
    """The receipts of a delivery: joined to it, or carrying its message id (one that arrived
    before the delivery was written)."""
    match = Q(delivery=delivery)
    if delivery.provider_message_id:
        match |= Q(delivery__isnull=True, message_id=delivery.provider_message_id)
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
    through an organization's own provider). Whether it did."""
    if not is_stop(text):
        return False
    try:
        number = addresses.phone_number(sender if sender.startswith("+") else f"+{sender}")
    except ValueError:
        logger.info("SMS reply from an unusable number ignored", extra={"sender": sender[:64]})
        return False
    latest = organization_id or (
        Delivery.objects.filter(channel="sms", recipient=number, is_proof=False)
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
