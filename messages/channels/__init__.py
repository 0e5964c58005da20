"""Channels behind one interface: `send(rendered, recipient) -> SendResult`.

A backend never raises for a delivery problem: it classifies it as a temporary failure (try again
later: SMTP 4xx, connection refused, timeout) or a permanent one (SMTP 5xx for the recipient).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string


@dataclass(frozen=True)
class Recipient:
    address: str  # email address, E.164 phone number, or push registration token
    push_platform: str = ""
    application: str = ""
    name: str = ""


@dataclass(frozen=True)
class RenderedMessage:
    parts: dict[str, str]  # subject/html/text, text, or title/body
    from_name: str = ""
    from_address: str = ""
    reply_to: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)  # push payload data


@dataclass(frozen=True)
class SendResult:
    outcome: str  # Delivery.Outcome value
    provider_message_id: str = ""
    provider_response: str = ""

    @property
    def sent(self) -> bool:
        return self.outcome == "sent"


class ChannelBackend(Protocol):
    def send(self, rendered: RenderedMessage, recipient: Recipient) -> SendResult: ...


@functools.cache
def backend_for(channel: str) -> ChannelBackend:
    """One backend instance per process and channel, so connections are reused across sends."""
    if channel == "email":
        from messages.channels.email import EmailChannel

        return EmailChannel()
    path = {"sms": settings.SMS_BACKEND, "push": settings.PUSH_BACKEND}[channel]
    return import_string(path)()
