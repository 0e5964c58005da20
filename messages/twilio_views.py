"""Twilio's webhooks: the status callback of a sent SMS (recorded on its delivery) and the inbound
message webhook (a STOP opts out). Both are signed by Twilio (X-Twilio-Signature, HMAC-SHA1 of the
URL and the form with the auth token, checked by twilio.request_validator); an unsigned or badly
signed request is refused (403) and changes nothing.

The installation's routes (/webhooks/twilio/status|inbound, TWILIO_AUTH_TOKEN) speak about the
organizations sending through the installation's Twilio account; an organization's provider's
routes (/webhooks/twilio/<provider id>/...) only about that organization's deliveries and numbers:
a status callback for another organization's message SID writes nothing of it."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator

from campaign import encryption
from messages import org_providers, sms_replies
from messages.models import OrganizationProvider

FORM_VALUE_MAX_CHARS = 2000  # Twilio's fields are short; an inbound body at most 1600 characters
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def signed(request: HttpRequest, auth_token: str | None = None) -> bool:
    """Whether Twilio signed this request with the auth token (default TWILIO_AUTH_TOKEN; an
    organization's Twilio provider's on its own routes): over the Twilio webhook base + path (the
    URL Twilio was given: twilio_sms.twilio_webhook_base) when set, else over the URL as the request
    reached us."""
    token = settings.TWILIO_AUTH_TOKEN if auth_token is None else auth_token
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not token:
        return False
    from messages.channels.twilio_sms import twilio_webhook_base

    base = twilio_webhook_base()  # the base the callbacks were asked with, the one Twilio signs
    url = base + request.get_full_path() if base else request.build_absolute_uri()
    form = {key: request.POST.get(key, "") for key in request.POST}
    return bool(RequestValidator(token).validate(url, form, signature))


def _field(request: HttpRequest, name: str) -> str:
    return str(request.POST.get(name, ""))[:FORM_VALUE_MAX_CHARS]


def _refused() -> HttpResponse:
    return HttpResponse("Invalid Twilio signature", status=403, content_type="text/plain")


@csrf_exempt
@require_POST
def twilio_status(request: HttpRequest) -> HttpResponse:
    if not signed(request):
        return _refused()
    return _status(request)


def _status(request: HttpRequest, provider: OrganizationProvider | None = None) -> HttpResponse:
    sid, status = _field(request, "MessageSid"), _field(request, "MessageStatus")
    if not sid or not status:
        return HttpResponse(
            "MessageSid and MessageStatus are required", status=400, content_type="text/plain"
        )
    raw = "&".join(f"{k}={_field(request, k)}" for k in sorted(request.POST))
    organization_id = provider.organization_id if provider is not None else None
    if organization_id is not None and sms_replies.of_another_organization(organization_id, sid):
        return HttpResponse(status=204)  # another organization's message: nothing of it written here
    sms_replies.record_receipt(
        provider=sms_replies.provider_key("twilio", organization_id, provider.pk if provider else None),
        message_id=sid,
        status=status,
        error_code=_field(request, "ErrorCode"),
        raw=raw,
        organization_id=organization_id,
        provider_name=provider.name if provider is not None else "",
    )
    return HttpResponse(status=204)


@csrf_exempt
@require_POST
def twilio_inbound(request: HttpRequest) -> HttpResponse:
    if not signed(request):
        return _refused()
    sms_replies.reply_received(sender=_field(request, "From"), text=_field(request, "Body"))
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")


def _provider_token(provider_id: int) -> tuple[OrganizationProvider, str] | None:
    """An organization's Twilio provider and its auth token; None when there is no such provider or
    its token cannot be read (the request is then refused like a bad signature)."""
    provider = OrganizationProvider.objects.filter(pk=provider_id, kind="twilio").first()
    if provider is None:
        return None
    try:
        token = org_providers.secrets_of(provider).get("auth_token", "")
    except encryption.InvalidToken:
        return None
    return (provider, token) if token else None


@csrf_exempt
@require_POST
def provider_status(request: HttpRequest, provider_id: int) -> HttpResponse:
    """The status callback of an organization's Twilio provider, signed with ITS auth token: joined
    only to that organization's deliveries."""
    found = _provider_token(provider_id)
    if found is None or not signed(request, found[1]):
        return _refused()
    return _status(request, found[0])


@csrf_exempt
@require_POST
def provider_inbound(request: HttpRequest, provider_id: int) -> HttpResponse:
    """An inbound SMS to an organization's Twilio number: a STOP opts out in THAT organization."""
    found = _provider_token(provider_id)
    if found is None or not signed(request, found[1]):
        return _refused()
    sms_replies.reply_received(
        sender=_field(request, "From"), text=_field(request, "Body"), organization_id=found[0].organization_id
    )
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")
