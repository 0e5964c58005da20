"""The push channel: title and body; the `pushPlatform`, `registrationToken` and `application` keys
of the API; the event's registration token (a profile has none); proofs to allow-listed tokens; an
FCM HTTP v1 backend (a service account, messages.channels.fcm), an HTTP backend in FCM's shape with a
static token, and a file backend for development."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings

from campaign import bounds
from campaign.models import Profile
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
from messages.channels.fcm import FcmClient, ttl_seconds
from messages.channels.http import GATEWAY_TIMEOUT, FileOutbox, post_json

PUSH_PLATFORMS = {"gcm": "gcm", "fcm": "gcm", "apns": "apns"}
REGISTRATION_TOKEN_MAX_LENGTH, APPLICATION_MAX_LENGTH = 4096, 255  # events.models.Event's columns


def fcm_payload(
    rendered: RenderedMessage, recipient: Recipient, *, now: dt.datetime | None = None
) -> dict[str, Any]:
    """`{"message": {"token", "notification", "data", "android", "apns"}}` as FCM v1 takes it: the
    notification for Android, an `aps.alert` for iOS (APNs through FCM), and, for an event with an
    expiration, a time to live that ends there (android.ttl, the apns-expiration header)."""
    title, body = rendered.parts.get("title", ""), rendered.parts.get("body", "")
    message: dict[str, Any] = {
        "token": recipient.address,
        "notification": {"title": title, "body": body},
        "data": {**rendered.data, "platform": recipient.push_platform, "application": recipient.application},
        "android": {"priority": "high"},
        "apns": {"payload": {"aps": {"alert": {"title": title, "body": body}, "sound": "default"}}},
    }
    now = now or dt.datetime.now(dt.UTC)
    ttl = ttl_seconds(rendered.expires_at, now)
    if ttl is not None:
        message["android"]["ttl"] = f"{ttl}s"
        message["apns"]["headers"] = {"apns-expiration": str(int(now.timestamp()) + ttl)}
    return {"message": message}


class FcmPushBackend:
    """Firebase Cloud Messaging HTTP v1 with a service account (messages.channels.fcm): the
    production backend, built when the worker first sends a push. Each option (a provider's
    `options` in PUSH_PROVIDERS) defaults to its FCM_* setting; `service_account_json` may be the
    key's JSON text or, in PUSH_PROVIDERS, the JSON object itself."""

    waits_on_network = True  # thread-safe: the token is refreshed under a lock

    def __init__(
        self,
        *,
        service_account_json: str | dict[str, Any] | None = None,
        service_account_file: str | None = None,
        project_id: str | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
    ) -> None:
        name = "FcmPushBackend"
        content = backend_option(name, "service_account_json", service_account_json, str | dict)
        path = backend_option(name, "service_account_file", service_account_file, str)
        if content is None and path is None:
            content, path = settings.FCM_SERVICE_ACCOUNT_JSON, settings.FCM_SERVICE_ACCOUNT_FILE
        self.client = FcmClient(
            service_account_json=content or "",
            service_account_file=path or "",
            project_id=setting_or(backend_option(name, "project_id", project_id, str), "FCM_PROJECT_ID"),
            base_url=setting_or(backend_option(name, "base_url", base_url, str), "FCM_BASE_URL"),
            timeout=setting_or(
                backend_option(name, "timeout", timeout, float, low=0.1, high=60), "FCM_TIMEOUT_SECONDS"
            ),
        )

    @staticmethod
    def send_seconds(timeout: float) -> float:
        from messages.channels.fcm import send_seconds

        return send_seconds(timeout)

    @property
    def max_send_seconds(self) -> float:
        return self.client.max_send_seconds

    def send(self, rendered: RenderedMessage, recipient: Recipient) -> SendResult:
        return self.client.send(fcm_payload(rendered, recipient))


class HttpPushBackend:
    """POSTs the FCM v1 payload to `url` with the static bearer `token` (default: PUSH_GATEWAY_URL,
    PUSH_GATEWAY_TOKEN): a gateway of your own, or a fake for development (no real Firebase project
    takes a static token)."""

    waits_on_network = True  # one request per send, nothing shared: safe on several threads
    max_send_seconds = 2 * GATEWAY_TIMEOUT + 1  # connecting, then the request (messages.channels.http)

    def __init__(self, *, url: str | None = None, token: str | None = None) -> None:
        self.url = backend_option("HttpPushBackend", "url", url, str)
        self.token = backend_option("HttpPushBackend", "token", token, str)

    def send(self, rendered: RenderedMessage, recipient: Recipient) -> SendResult:
        return post_json(
            setting_or(self.url, "PUSH_GATEWAY_URL"),
            fcm_payload(rendered, recipient),
            token=setting_or(self.token, "PUSH_GATEWAY_TOKEN"),
        )


class FilePushBackend(FileOutbox):
    channel = "push"

    def send(self, rendered: RenderedMessage, recipient: Recipient) -> SendResult:
        return self.write(fcm_payload(rendered, recipient))


class PushChannel(Channel):
    name = "push"
    label = "Push notification"
    parts = (Part("title", label="Title"), Part("body", label="Body"))
    required = (("title", "body"),)
    recipient_keys = (
        RecipientKey(
            "pushPlatform", column="push_platform", openapi={"type": "string", "enum": ["gcm", "fcm", "apns"]}
        ),
        RecipientKey(
            "registrationToken",
            column="registration_token",
            max_length=REGISTRATION_TOKEN_MAX_LENGTH,
            openapi={"type": "string", "maxLength": REGISTRATION_TOKEN_MAX_LENGTH},
        ),
        RecipientKey(
            "application",
            column="application",
            required=False,
            max_length=APPLICATION_MAX_LENGTH,
            openapi={"type": "string", "maxLength": APPLICATION_MAX_LENGTH},
        ),
    )
    proof_part = "title"
    proof_kind = "push"
    proof_addresses_label = "Registration tokens"
    preview_template = "messages/channels/push_preview.html"
    backend_setting = "PUSH_BACKEND"

    def recipient_from_body(self, body: Any, *, required: bool) -> dict[str, str]:
        platform, token = body.get("pushPlatform"), body.get("registrationToken")
        if platform is None and token is None and not required:
            return {}
        if not isinstance(platform, str) or platform.lower() not in PUSH_PLATFORMS:
            raise RecipientError("pushPlatform", "is required for a push event: gcm (or fcm) or apns")
        if not isinstance(token, str) or not token.strip():
            raise RecipientError("registrationToken", "is required for a push event")
        application = body.get("application")
        application = "" if application is None else application
        for key, value, limit in (
            ("registrationToken", token.strip(), REGISTRATION_TOKEN_MAX_LENGTH),
            ("application", application, APPLICATION_MAX_LENGTH),
        ):
            if not isinstance(value, str):
                raise RecipientError(key, "must be a string")
            problem = bounds.text_problem(value, max_length=limit)
            if problem:
                raise RecipientError(key, problem)
        return {
            "push_platform": PUSH_PLATFORMS[platform.lower()],
            "registration_token": token.strip(),
            "application": application,
        }

    def default_content(self, *, label: str, fields: list[str], collections: list[dict]) -> dict[str, str]:
        return {"title": label, "body": " ".join(f"{{{{ ctx.{name} }}}}" for name in fields) or label}

    def sample_body(self) -> dict[str, str]:
        return {
            "pushPlatform": "gcm",
            "registrationToken": "<REGISTRATION_TOKEN>",
            "application": "com.example.app",
        }

    def event_recipient(self, event: Any) -> Recipient:
        return Recipient(
            address=event.registration_token, push_platform=event.push_platform, application=event.application
        )

    def profile_recipient(self, event: Any, profile: Profile) -> Recipient:
        """A profile has no registration token: the event's own token, with the profile's name."""
        name = " ".join(p for p in (profile.first_name, profile.last_name) if p)
        return Recipient(
            address=event.registration_token,
            name=name,
            push_platform=event.push_platform,
            application=event.application,
        )

    def no_profile_address(self) -> str:
        return "a profile has no push registration token: send push proofs to allow-listed tokens"


PUSH = PushChannel()
