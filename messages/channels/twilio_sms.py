"""SMS through Twilio's REST API (the twilio package): one `Messages.create` per send, against
TWILIO_BASE_URL (a test's loopback fake), with a status callback to /webhooks/twilio/status when
TWILIO_WEBHOOK_BASE_URL is set, and the event's expiration as ValidityPeriod (seconds, 1 to 36000).

Twilio's answer classified: 429 and 5xx, network errors, 401/403 (the operator fixes the
credentials): temporary. A refused `To` (21211 invalid number, 21610 the recipient replied STOP,
21614 not a mobile): permanent, the number quarantined. Any other 4xx: permanent, the number usable.
"""

from __future__ import annotations

import datetime as dt
import threading

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from django.utils import timezone
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from messages.channels import Recipient, RenderedMessage, SendResult

TEMPORARY, PERMANENT, SENT = "temporaryFailure", "permanentFailure", "sent"
QUARANTINING_CODES = {21211, 21610, 21614}
VALIDITY_MAX_SECONDS = 36000

_local = threading.local()


def client() -> Client:
    """This thread's client (a requests session each: the sender threads share none)."""
    key = (settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.TWILIO_BASE_URL)
    if getattr(_local, "key", None) != key:
        if not settings.TWILIO_ACCOUNT_SID or not settings.TWILIO_AUTH_TOKEN:
            raise ImproperlyConfigured("the Twilio backend needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
        made = Client(
            settings.TWILIO_ACCOUNT_SID,
            settings.TWILIO_AUTH_TOKEN,
            http_client=TwilioHttpClient(timeout=settings.TWILIO_TIMEOUT_SECONDS),
        )
        made.api.base_url = settings.TWILIO_BASE_URL.rstrip("/")
        _local.key, _local.client = key, made
    return _local.client  # type: ignore[no-any-return]


def validity_seconds(expires_at: dt.datetime | None) -> int | None:
    if expires_at is None:
        return None
    left = int((expires_at - timezone.now()).total_seconds())
    return min(max(left, 1), VALIDITY_MAX_SECONDS)


class TwilioSmsBackend:
    waits_on_network = True  # one client per thread

    def send(self, rendered: RenderedMessage, recipient: Recipient) -> SendResult:
        fields: dict[str, object] = {"to": recipient.address, "body": rendered.parts.get("text", "")}
        sender = rendered.from_name or settings.TWILIO_FROM
        if settings.TWILIO_MESSAGING_SERVICE_SID and not rendered.from_name:
            fields["messaging_service_sid"] = settings.TWILIO_MESSAGING_SERVICE_SID
        else:
            fields["from_"] = sender
        if settings.TWILIO_WEBHOOK_BASE_URL:
            fields["status_callback"] = settings.TWILIO_WEBHOOK_BASE_URL.rstrip("/") + reverse(
                "twilio-status"
            )
        validity = validity_seconds(rendered.expires_at)
        if validity is not None:
            fields["validity_period"] = validity
        try:
            message = client().messages.create(**fields)  # type: ignore[arg-type]
        except TwilioRestException as error:
            response = f"Twilio {error.status} ({error.code}): {error.msg}"[:500]
            if error.status == 429 or error.status >= 500 or error.status in (401, 403):
                return SendResult(TEMPORARY, provider_response=response)
            return SendResult(
                PERMANENT, provider_response=response, quarantines=error.code in QUARANTINING_CODES
            )
        except (TwilioException, OSError) as error:
            return SendResult(TEMPORARY, provider_response=f"Twilio: {error}"[:500])
        return SendResult(
            SENT, provider_message_id=message.sid or "", provider_response=f"Twilio {message.status}"
        )
