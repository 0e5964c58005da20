"""SMS: an HTTP gateway backend (JSON payload) and a file backend for development."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from messages.channels import Recipient, RenderedMessage, SendResult
from messages.channels.http import FileOutbox, post_json


def sms_payload(rendered: RenderedMessage, recipient: Recipient) -> dict[str, str]:
    return {"to": recipient.address, "from": rendered.from_name, "text": rendered.parts.get("text", "")}


class HttpSmsBackend:
    """POSTs `{"to", "from", "text"}` to SMS_GATEWAY_URL with SMS_GATEWAY_TOKEN as a bearer token."""

    def send(self, rendered: RenderedMessage, recipient: Recipient) -> SendResult:
        return post_json(
            settings.SMS_GATEWAY_URL, sms_payload(rendered, recipient), token=settings.SMS_GATEWAY_TOKEN
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
