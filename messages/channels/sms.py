"""The SMS channel: one text part; the `mobilePhone` key of the API (E.164); the profile's mobile
phone; the preview counts characters and segments; an HTTP gateway backend (JSON payload) and a
file backend for development."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from campaign import addresses, senders
from campaign.models import Organization, Profile
from messages.channels import (
    Channel,
    Part,
    Recipient,
    RecipientError,
    RecipientKey,
    RenderedMessage,
    SendResult,
    backend_option,
    setting_or,
)
from messages.channels.http import GATEWAY_TIMEOUT, FileOutbox, post_json


def sms_payload(rendered: RenderedMessage, recipient: Recipient) -> dict[str, str]:
    return {"to": recipient.address, "from": rendered.from_name, "text": rendered.parts.get("text", "")}


class HttpSmsBackend:
    """POSTs `{"to", "from", "text"}` to `url` with `token` as a bearer token (default: the
    SMS_GATEWAY_URL and SMS_GATEWAY_TOKEN settings)."""

    waits_on_network = True  # one request per send, nothing shared: safe on several threads
    max_send_seconds = 2 * GATEWAY_TIMEOUT + 1  # connecting, then the request (messages.channels.http)

    def __init__(self, *, url: str | None = None, token: str | None = None) -> None:
        self.url = backend_option("HttpSmsBackend", "url", url, str)
        self.token = backend_option("HttpSmsBackend", "token", token, str)

    def send(self, rendered: RenderedMessage, recipient: Recipient) -> SendResult:
        return post_json(
            setting_or(self.url, "SMS_GATEWAY_URL"),
            sms_payload(rendered, recipient),
            token=setting_or(self.token, "SMS_GATEWAY_TOKEN"),
        )


class FileSmsBackend(FileOutbox):
    channel = "sms"

    def send(self, rendered: RenderedMessage, recipient: Recipient) -> SendResult:
        return self.write(sms_payload(rendered, recipient))


# GSM 03.38: the basic set (one septet each) and the extension set (two septets: escape + char).
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = set("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SmsLength:
    encoding: str  # "GSM-7" or "UCS-2"
    characters: int  # as the network counts them: septets for GSM-7, UTF-16 code units for UCS-2
    segments: int
    per_segment: int


def sms_length(text: str) -> SmsLength:
    """How a text travels as SMS: GSM-7 when every character allows it, else UCS-2; then segments
    (160/70 characters alone, 153/67 per part when concatenated)."""
    if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text):
        units = sum(2 if c in GSM7_EXTENSION else 1 for c in text)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi, encoding = 70, 67, "UCS-2"
    if units <= single:
        return SmsLength(encoding, units, 1 if units else 0, single)
    return SmsLength(encoding, units, -(-units // multi), multi)


@dataclass(frozen=True)
class SmsCharacters:
    """The characters of a text that cost more than one GSM-7 character each, in the order they
    first appear: those outside GSM-7 (one of them makes the whole text UCS-2, 70 characters a
    segment instead of 160) and those of GSM-7's extension set (two characters each)."""

    forcing_ucs2: tuple[str, ...]
    extension: tuple[str, ...]


def sms_characters(text: str) -> SmsCharacters:
    seen = dict.fromkeys(text)  # each character once, in order
    return SmsCharacters(
        forcing_ucs2=tuple(c for c in seen if c not in GSM7_BASIC and c not in GSM7_EXTENSION),
        extension=tuple(c for c in seen if c in GSM7_EXTENSION and not c.isspace()),
    )


class SmsChannel(Channel):
    name = "sms"
    label = "SMS"
    parts = (Part("text", label="Text"),)
    required = (("text",),)
    recipient_keys = (
        RecipientKey(
            "mobilePhone",
            column="mobile_phone",
            openapi={"type": "string", "maxLength": 64, "description": "E.164, e.g. +33612345678"},
        ),
    )
    proof_part = "text"
    preview_template = "messages/channels/sms_preview.html"
    backend_setting = "SMS_BACKEND"
    sample_address = "+15555550123"
    sender_name_label = "SMS sender"  # the gateway's `from`
    profile_has_address = True
    # Click tracking through short signed links, only for a message that opts in (messages.tracking).
    tracked_part = "text"
    short_links = True

    def default_sender_name(self, organization: Organization) -> str:
        """The organization's SMS sender, not its name (an email From name, rarely a valid SMS
        sender); empty: the provider's default (TWILIO_FROM, SMPP_SOURCE_ADDR...)."""
        return organization.sms_sender

    def sender_name(self, name: str) -> str:
        """The organization's SMS sender rule (campaign.addresses.sms_sender): an E.164 number, a
        short code, or 1 to 11 GSM characters; an SMSC would cut a longer one silently."""
        return addresses.sms_sender(name) if name.strip() else ""

    def recipient_from_body(self, body: Any, *, required: bool) -> dict[str, str]:
        value = body.get("mobilePhone")
        if value is None and not required:
            return {}
        if not isinstance(value, str) or not value.strip():
            raise RecipientError("mobilePhone", "is required for an SMS event (E.164, e.g. +33612345678)")
        try:
            return {"mobile_phone": addresses.phone_number(value)}
        except ValueError as error:
            raise RecipientError("mobilePhone", str(error)) from None

    def preview_context(self, rendered: RenderedMessage) -> dict[str, Any]:
        text = rendered.parts.get("text", "")
        return {"sms": sms_length(text), "sms_characters": sms_characters(text)}

    def preview_data(self, rendered: RenderedMessage) -> dict[str, Any]:
        text = rendered.parts.get("text", "")
        length, characters = sms_length(text), sms_characters(text)
        return {
            "sms": {
                "encoding": length.encoding,
                "characters": length.characters,
                "segments": length.segments,
                "perSegment": length.per_segment,
                "forcingUcs2": list(characters.forcing_ucs2),
                "extension": list(characters.extension),
            }
        }

    def profile_address(self, profile: Profile) -> str:
        return profile.mobile_phone

    def proof_address(self, typed: str) -> str:
        try:
            return addresses.phone_number(typed)
        except ValueError as error:
            raise senders.ProofRefused(str(error)) from None

    def proof_allowed(self, *, organization: Organization, address: str) -> bool:
        return senders.allow_listed(
            organization=organization, kinds=["phone"], value=address
        ) or senders.is_test_profile_address(organization=organization, mobile_phone=address)


SMS = SmsChannel()
