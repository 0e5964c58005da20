"""Push: an HTTP backend in the shape of FCM HTTP v1, and a file backend for development."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from messages.channels import Recipient, RenderedMessage, SendResult
from messages.channels.http import FileOutbox, post_json


def fcm_payload(rendered: RenderedMessage, recipient: Recipient) -> dict[str, Any]:
    """`{"message": {"token", "notification": {"title", "body"}, "data"}}` as FCM v1 takes it."""
    message: dict[str, Any] = {
        "token": recipient.address,
        "notification": {"title": rendered.parts.get("title", ""), "body": rendered.parts.get("body", "")},
        "data": {**rendered.data, "platform": recipient.push_platform, "application": recipient.application},
    }
    if recipient.push_platform == "apns":
        message["apns"] = {"payload": {"aps": {"sound": "default"}}}
    return {"message": message}


class HttpPushBackend:
    """POSTs the FCM v1 payload to PUSH_GATEWAY_URL (e.g. .../v1/projects/<id>/messages:send)."""

    def send(self, rendered: RenderedMessage, recipient: Recipient) -> SendResult:
        return post_json(
            settings.PUSH_GATEWAY_URL, fcm_payload(rendered, recipient), token=settings.PUSH_GATEWAY_TOKEN
        )


class FilePushBackend(FileOutbox):
    channel = "push"

    def send(self, rendered: RenderedMessage, recipient: Recipient) -> SendResult:
        return self.write(fcm_payload(rendered, recipient))
