"""An email service provider's tracking webhooks (django-anymail's, under /anymail/): what the provider
says after the send, joined to its delivery by the provider's message id.

anymail authenticates each webhook (ANYMAIL's WEBHOOK_SECRET as basic auth, and the provider's own
signature where it has one: Mailgun, SendGrid, Postmark's basic auth only...) and normalises it into
an AnymailTrackingEvent, sent as its `tracking` signal; `record` is connected to that signal.

* A hard bounce or a spam complaint quarantines the address for the delivery's organization (its
  later events end `ignored`); a soft bounce (a deferral) is only recorded.
* One row per provider event (ProviderEvent), deduplicated by the provider's event id: providers send
  the same one more than once. A provider that gives no event id gets one made of the event's content.
* The event's status does not change: it already has its one final status (`processed`, the provider
  accepted the email); the bounce is on its delivery, in its timeline, and a `message.bounced`
  notification goes to the organization's webhooks (events.webhooks).
* An event about a message this house does not know is dropped (200), unless it is less than
  NOT_YET_RECORDED old: then the delivery may not be recorded yet (the worker records it with the
  attempt's end), and the answer is 503, so the provider sends it again later.
* Opens and clicks are this house's own (messages.tracking): a provider's are not recorded.

Whose event it is comes from the route it arrived on. The installation's routes (/anymail/<esp>/...,
ANYMAIL's WEBHOOK_SECRET and signing keys) speak for the installation's ESP accounts: they join only
the deliveries of organizations sending email through the installation's providers (no enabled email
provider of their own). An organization's own ESP account posts to its provider's route
(/anymail/provider/<provider id>/<esp>/tracking/), which runs anymail's tracking view for that ESP
with THAT provider's webhook secret (basic auth) and signing key (its encrypted secrets, never the
installation's), and joins only that organization's deliveries.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import hashlib
import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt

from campaign import encryption
from messages import org_providers, services
from messages.models import Delivery, OrganizationProvider, ProviderEvent

logger = logging.getLogger(__name__)

Kind = ProviderEvent.Kind
QUARANTINING = frozenset({Kind.HARD_BOUNCE, Kind.COMPLAINT})
# Postmark's bounce types that anymail calls `bounced` though the mailbox may accept mail later.
SOFT_TYPES = frozenset({"SoftBounce", "Transient", "DnsError"})
IGNORED_TYPES = frozenset({"opened", "clicked", "queued", "sent", "inbound", "inbound_failed"})
SIMPLE_KINDS = {
    "complained": Kind.COMPLAINT,
    "deferred": Kind.SOFT_BOUNCE,
    "rejected": Kind.REJECTED,
    "failed": Kind.FAILED,
    "delivered": Kind.DELIVERED,
    "unsubscribed": Kind.UNSUBSCRIBED,
}
DESCRIPTION_MAX = 1000
# An event about an unknown message this recent may be about a send whose delivery is not recorded yet.
NOT_YET_RECORDED = dt.timedelta(minutes=10)


# anymail's tracking view of each ESP kind an organization may have (messages.provider_kinds), and
# the secrets each needs besides the webhook secret (Mailgun signs its webhooks).
TRACKING_VIEWS = {
    "postmark": "anymail.webhooks.postmark.PostmarkTrackingWebhookView",
    "mailgun": "anymail.webhooks.mailgun.MailgunTrackingWebhookView",
    "sendgrid": "anymail.webhooks.sendgrid.SendGridTrackingWebhookView",
    "amazon_ses": "anymail.webhooks.amazon_ses.AmazonSESTrackingWebhookView",
    "brevo": "anymail.webhooks.brevo.BrevoTrackingWebhookView",
}
SIGNING_SECRETS = {"mailgun": ("webhook_signing_key",)}


@dataclass(frozen=True)
class Scope:
    """An organization's provider whose route an event arrived on."""

    organization_id: int
    provider_name: str  # the name its deliveries carry (Delivery.provider)


# Set by `provider_tracking` while anymail's view runs (its `tracking` signal is sent synchronously).
_scope: ContextVar[Scope | None] = ContextVar("provider_event_scope", default=None)


class NotYetRecorded(Exception):
    """A provider event about a message sent moments ago whose delivery is not recorded yet."""


def kind_of(event: Any) -> str:
    """The ProviderEvent kind of an anymail tracking event."""
    if event.event_type == "bounced":
        raw = event.esp_event if isinstance(event.esp_event, dict) else {}
        return Kind.SOFT_BOUNCE if raw.get("Type") in SOFT_TYPES else Kind.HARD_BOUNCE
    return SIMPLE_KINDS.get(event.event_type, Kind.OTHER)


def event_id_of(esp_name: str, event: Any) -> str:
    """The provider's event id, or one made of what identifies the event when it gives none."""
    if event.event_id:
        return str(event.event_id)[:255]
    seen = "|".join(
        str(part) for part in (esp_name, event.message_id, event.event_type, event.timestamp, event.recipient)
    )
    return "sha256:" + hashlib.sha256(seen.encode()).hexdigest()


def describe(event: Any) -> str:
    parts = [event.description, event.mta_response]
    if event.reject_reason and not any(parts):
        parts.append(event.reject_reason)
    return " | ".join(str(p) for p in parts if p)[:DESCRIPTION_MAX]


def record(*, esp_name: str, event: Any, scope: Scope | None = None) -> ProviderEvent | None:
    """Record a provider's tracking event on its delivery (and quarantine the address if it says the
    mailbox is gone or its owner complained): a delivery of the scope's organization (an event of its
    own provider), else of an organization sending through the installation's providers. None:
    nothing recorded (an open or a click, no such delivery with that message id, the same event
    again)."""
    if event.event_type in IGNORED_TYPES or not event.message_id:
        return None
    found = Delivery.objects.filter(provider_message_id=str(event.message_id), channel="email")
    if scope is not None:
        found = found.filter(organization_id=scope.organization_id, provider__in=[scope.provider_name, ""])
    else:
        found = org_providers.without_own_providers(found, "email")
    delivery = found.order_by("-id").only("pk", "organization_id", "recipient").first()
    if delivery is None:
        if event.timestamp is not None and timezone.now() - event.timestamp < NOT_YET_RECORDED:
            # Sent a moment ago: the worker records the delivery with its attempt's end, and a fast
            # provider may tell first. Answered 503 so that the provider sends it again later.
            raise NotYetRecorded(str(event.message_id))
        logger.info("provider event for an unknown message", extra={"provider": esp_name})
        return None
    kind = kind_of(event)
    row = ProviderEvent(
        organization_id=delivery.organization_id,
        delivery=delivery,
        provider=esp_name[:40],
        provider_event_id=event_id_of(esp_name, event),
        kind=kind,
        occurred_at=event.timestamp,
        description=describe(event),
        quarantined=kind in QUARANTINING,
    )
    try:
        with transaction.atomic():
            row.save()
            if row.quarantined:
                services.quarantine(
                    organization_id=delivery.organization_id,
                    channel="email",
                    address=delivery.recipient,
                    reason=f"{row.get_kind_display()} reported by {esp_name}: {row.description}",
                )
    except IntegrityError:
        return None  # the same provider event again
    return row


def on_tracking(sender: Any, event: Any, esp_name: str, **kwargs: Any) -> None:
    """anymail's `tracking` signal receiver (connected in messages.apps)."""
    record(esp_name=esp_name, event=event, scope=_scope.get())


def _guarded(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """anymail's view, answering 404 while no WEBHOOK_SECRET is set: without one anymail would accept
    a provider's (basic-auth-only) webhook from anyone, with just a warning."""

    @functools.wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not (getattr(settings, "ANYMAIL", None) or {}).get("WEBHOOK_SECRET") and not getattr(
            settings, "ANYMAIL_WEBHOOK_SECRET", None
        ):
            return JsonResponse({"error": "provider webhooks are off: no ANYMAIL_WEBHOOK_SECRET"}, status=404)
        try:
            return view(request, *args, **kwargs)
        except NotYetRecorded:
            return JsonResponse({"error": "unknown message yet: send it again later"}, status=503)

    return guarded


def webhook_urlpatterns() -> list[Any]:
    """anymail's URLs (its tracking and inbound webhooks), each behind `_guarded`."""
    from anymail import urls

    patterns = []
    for pattern in urls.urlpatterns:
        pattern = copy.copy(pattern)
        pattern.callback = _guarded(pattern.callback)
        patterns.append(pattern)
    return patterns


def _off(reason: str) -> JsonResponse:
    return JsonResponse({"error": f"this provider's webhooks are off: {reason}"}, status=404)


@csrf_exempt
def provider_tracking(request: HttpRequest, provider_id: int, esp: str) -> HttpResponse:
    """The tracking webhook of an organization's own ESP account: anymail's view for that ESP, with
    the provider's webhook secret (basic auth) and signing key only; 404 while they are not set
    (never the installation's secrets in their place)."""
    provider = OrganizationProvider.objects.filter(pk=provider_id, kind=esp, channel="email").first()
    if provider is None or esp not in TRACKING_VIEWS:
        return JsonResponse({"error": "no such email provider"}, status=404)
    try:
        secrets = org_providers.secrets_of(provider)
    except encryption.InvalidToken:
        return _off("its secrets cannot be decrypted (ENCRYPTION_KEYS)")
    init: dict[str, Any] = {"webhook_secret": secrets.get("webhook_secret", "")}
    for name in ("webhook_secret", *SIGNING_SECRETS.get(esp, ())):
        if not secrets.get(name):
            return _off(f"no {name.replace('_', ' ')} set (the provider's admin page)")
        init[name] = secrets[name]
    if esp == "amazon_ses":
        # No request to a URL a tenant's message names: its SNS subscription is confirmed in AWS.
        init["auto_confirm_sns_subscriptions"] = False
    view = import_string(TRACKING_VIEWS[esp])(**init)
    view.setup(request)
    token = _scope.set(Scope(provider.organization_id, provider.name))
    try:
        response: HttpResponse = view.dispatch(request)
        return response
    except NotYetRecorded:
        return JsonResponse({"error": "unknown message yet: send it again later"}, status=503)
    finally:
        _scope.reset(token)
