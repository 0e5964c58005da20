"""SMS through Twilio's REST API (the twilio package): one `Messages.create` per send, against
TWILIO_BASE_URL (a test's loopback fake), with a status callback to /webhooks/twilio/status when
a Twilio webhook base (TWILIO_WEBHOOK_BASE_URL, else PUBLIC_URL) is set, and the event's
expiration as ValidityPeriod (seconds, 1 to 36000).

Twilio's answer classified: 429 and 5xx, network errors, 401/403 (the operator fixes the
credentials): temporary, and the provider's fault (messages.providers: the next provider is tried).
A refused `To` (21211 invalid number, 21610 the recipient replied STOP, 21614 not a mobile):
permanent, the number quarantined. Any other 4xx: permanent, the number usable.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import threading

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from django.utils import timezone
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from messages.channels import Recipient, RenderedMessage, SendResult, backend_option, setting_or
from messages.channels.http import written_then_lost

TEMPORARY, PERMANENT, SENT = "temporaryFailure", "permanentFailure", "sent"
QUARANTINING_CODES = {21211, 21610, 21614}
VALIDITY_MAX_SECONDS = 36000

CLIENTS_PER_THREAD = 16  # a thread's clients kept (the least recently used beyond are dropped)

_local = threading.local()
ClientKey = tuple[str, str, str, float]


def client(account_sid: str, auth_token: str, base_url: str, timeout: float) -> Client:
    """This thread's client for these credentials (a requests session each: the sender threads
    share none, and two Twilio accounts never share one). At most CLIENTS_PER_THREAD are kept: an
    organization's changed token does not keep its old client for the rest of the process."""
    key = (account_sid, auth_token, base_url, timeout)
    clients: collections.OrderedDict[ClientKey, Client] | None = getattr(_local, "clients", None)
    if clients is None:
        clients = _local.clients = collections.OrderedDict()
    found = clients.get(key)
    if found is not None:
        clients.move_to_end(key)
        return found
    if not account_sid or not auth_token:
        raise ImproperlyConfigured("the Twilio backend needs an account SID and an auth token")
    found = Client(account_sid, auth_token, http_client=TwilioHttpClient(timeout=timeout))
    found.api.base_url = base_url.rstrip("/")
    clients[key] = found
    while len(clients) > CLIENTS_PER_THREAD:
        _key, dropped = clients.popitem(last=False)
        session = getattr(dropped.http_client, "session", None)
        if session is not None:
            session.close()
    return found


def _forget_in_child() -> None:
    """A forked child makes its own clients (the parent's sessions hold the parent's sockets)."""
    global _local
    _local = threading.local()


os.register_at_fork(after_in_child=_forget_in_child)


def twilio_webhook_base() -> str:
    """This site as Twilio reaches it, the one base of every Twilio URL: the status callbacks a
    send asks for (the settings' and each organization's provider's) and the URL a webhook's
    signature is checked over. TWILIO_WEBHOOK_BASE_URL, else PUBLIC_URL; "" when neither is set
    (no status callback is asked for; a signature is checked over the URL as it reached us)."""
    base = str(settings.TWILIO_WEBHOOK_BASE_URL or getattr(settings, "PUBLIC_URL", "") or "")
    return base.rstrip("/")


def validity_seconds(expires_at: dt.datetime | None) -> int | None:
    if expires_at is None:
        return None
    left = int((expires_at - timezone.now()).total_seconds())
    return min(max(left, 1), VALIDITY_MAX_SECONDS)


class TwilioSmsBackend:
    """One Twilio account. Each option (a provider's `options` in SMS_PROVIDERS) defaults to its
    TWILIO_* setting, read at each send: `from_` is the sender of a message whose organization
    names none; `status_callback_url` defaults to `twilio_webhook_base()` + /webhooks/twilio/status
    when a base is set ("": no status callback)."""

    waits_on_network = True  # one client per thread

    def __init__(
        self,
        *,
        account_sid: str | None = None,
        auth_token: str | None = None,
        from_: str | None = None,
        messaging_service_sid: str | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        status_callback_url: str | None = None,
    ) -> None:
        name = "TwilioSmsBackend"
        self.account_sid = backend_option(name, "account_sid", account_sid, str)
        self.auth_token = backend_option(name, "auth_token", auth_token, str)
        self.from_ = backend_option(name, "from_", from_, str)
        self.messaging_service_sid = backend_option(name, "messaging_service_sid", messaging_service_sid, str)
        self.base_url = backend_option(name, "base_url", base_url, str)
        self.timeout = backend_option(name, "timeout", timeout, float, low=0.1, high=60)
        self.status_callback_url = backend_option(name, "status_callback_url", status_callback_url, str)

    def client(self) -> Client:
        return client(
            setting_or(self.account_sid, "TWILIO_ACCOUNT_SID"),
            setting_or(self.auth_token, "TWILIO_AUTH_TOKEN"),
            setting_or(self.base_url, "TWILIO_BASE_URL"),
            setting_or(self.timeout, "TWILIO_TIMEOUT_SECONDS"),
        )

    @staticmethod
    def send_seconds(timeout: float) -> float:
        """One request (the twilio client retries none)."""
        return float(timeout) + 1

    @property
    def max_send_seconds(self) -> float:
        return self.send_seconds(setting_or(self.timeout, "TWILIO_TIMEOUT_SECONDS"))

    def callback_url(self) -> str:
        if self.status_callback_url is not None:
            return str(self.status_callback_url)
        base = twilio_webhook_base()
        return base + reverse("twilio-status") if base else ""

    def send(self, rendered: RenderedMessage, recipient: Recipient) -> SendResult:
        fields: dict[str, object] = {"to": recipient.address, "body": rendered.parts.get("text", "")}
        sender = rendered.from_name or setting_or(self.from_, "TWILIO_FROM")
        service = setting_or(self.messaging_service_sid, "TWILIO_MESSAGING_SERVICE_SID")
        if service and not rendered.from_name:
            fields["messaging_service_sid"] = service
        else:
            fields["from_"] = sender
        callback = self.callback_url()
        if callback:
            fields["status_callback"] = callback
        validity = validity_seconds(rendered.expires_at)
        if validity is not None:
            fields["validity_period"] = validity
        try:
            message = self.client().messages.create(**fields)  # type: ignore[arg-type]
        except TwilioRestException as error:
            response = f"Twilio {error.status} ({error.code}): {error.msg}"[:500]
            if error.status == 429 or error.status >= 500 or error.status in (401, 403):
                return SendResult(TEMPORARY, provider_response=response, provider_fault=True)
            return SendResult(
                PERMANENT, provider_response=response, quarantines=error.code in QUARANTINING_CODES
            )
        except (TwilioException, OSError) as error:
            return SendResult(
                TEMPORARY,
                provider_response=f"Twilio: {error}"[:500],
                provider_fault=True,
                outcome_unknown=written_then_lost(error),  # the request written, the answer lost
            )
        return SendResult(
            SENT, provider_message_id=message.sid or "", provider_response=f"Twilio {message.status}"
        )
