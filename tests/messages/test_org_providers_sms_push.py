"""An organization's own SMS and push providers (messages.org_providers, built with the backends'
keyword options): its Twilio account sends its SMS from its sender with a status callback naming the
provider, another organization's SMS leave through the settings; its Firebase project sends its
pushes; and no organization's provider ever carries the installation's credentials."""

from __future__ import annotations

import base64
import json

import pytest
from django.urls import reverse

from events import pipeline
from messages import org_providers, providers
from messages.channels import backend_for
from messages.models import Delivery, OrganizationProvider
from tests.conftest import publish_events
from tests.events.test_pipeline import accept
from tests.fcm import FakeGoogle
from tests.twilio import SID, FakeTwilio

pytestmark = pytest.mark.django_db
NUMBER = "+33612345678"
ORG_TOKEN = "organization-twilio-token"
OTP = {
    "name": "otp",
    "channel": "sms",
    "fields": [{"name": "code", "type": "text"}],
    "message": {"text": "Your code: {{ ctx.code }}"},
}


@pytest.fixture(autouse=True)
def _allow_loopback(settings, tmp_path):
    settings.PROVIDER_ALLOW_PRIVATE_TARGETS = True
    settings.CHANNEL_OUTBOX_DIR = str(tmp_path)
    settings.TWILIO_WEBHOOK_BASE_URL = "https://campaign.example.com"
    backend_for.cache_clear()
    providers.forget_state()
    yield
    backend_for.cache_clear()
    providers.forget_state()


def provider(organization, kind: str, options: dict, secrets: dict, name: str = "") -> OrganizationProvider:
    row = OrganizationProvider(
        organization=organization, name=name or kind.replace("_", "-"), kind=kind, options=options
    )
    org_providers.save(row, secrets=secrets)
    return row


def twilio_provider(organization, fake: FakeTwilio, **options) -> OrganizationProvider:
    return provider(
        organization,
        "twilio",
        {"account_sid": SID, "base_url": fake.url, "timeout": 5.0, **options},
        {"auth_token": ORG_TOKEN},
    )


def send_otp(configuration, code: str = "4242") -> Delivery:
    event = accept(configuration, {"mobilePhone": NUMBER, "ctx": {"code": code}})
    assert pipeline.process(event.pk) == "processed"
    return Delivery.objects.get(event_link__event=event)


def test_an_organizations_twilio_sends_from_its_sender_with_its_own_callback(
    organization, other_organization, settings, tmp_path
):
    settings.SMS_BACKEND = "messages.channels.sms.FileSmsBackend"
    organization.sms_sender = "GEOMETRIXX"
    organization.save()
    mine = publish_events(organization, OTP)[0]
    theirs = publish_events(other_organization, OTP)[0]
    fake = FakeTwilio()
    try:
        row = twilio_provider(organization, fake, from_="+15005550006")
        delivery = send_otp(mine)
        other = send_otp(theirs, "1111")
    finally:
        fake.stop()
    (request,) = fake.requests
    assert request["authorization"] == "Basic " + base64.b64encode(f"{SID}:{ORG_TOKEN}".encode()).decode()
    form = request["form"]
    assert form["To"] == NUMBER and form["Body"] == "Your code: 4242"
    assert form["From"] == "GEOMETRIXX"  # the organization's sender, before the provider's default
    assert form["StatusCallback"] == "https://campaign.example.com" + reverse(
        "twilio-provider-status", args=[row.pk]
    )
    assert delivery.provider == "twilio" and delivery.provider_message_id == "SM1"
    # The other organization has no provider: the settings' (a file outbox), from no sender of ours.
    sms_file = json.loads(next((tmp_path / "sms").iterdir()).read_text())
    assert sms_file == {"to": NUMBER, "from": "", "text": "Your code: 1111"} and other.outcome == "sent"


def test_without_an_organization_sender_the_providers_default_is_used(organization):
    configuration = publish_events(organization, OTP)[0]
    fake = FakeTwilio()
    try:
        twilio_provider(organization, fake, from_="+15005550006")
        send_otp(configuration)
    finally:
        fake.stop()
    assert fake.requests[0]["form"]["From"] == "+15005550006"


def test_a_messages_own_sender_comes_first(organization):
    from messages.models import MessageVersion

    organization.sms_sender = "GEOMETRIXX"
    organization.save()
    configuration = publish_events(organization, OTP)[0]
    version = configuration.message.live_version
    MessageVersion.objects.filter(pk=version.pk).update(
        content={**version.content, "from": {"name": "SHOP", "address": ""}}
    )
    fake = FakeTwilio()
    try:
        twilio_provider(organization, fake)
        send_otp(configuration)
    finally:
        fake.stop()
    assert fake.requests[0]["form"]["From"] == "SHOP"


def test_an_organizations_firebase_project_sends_its_pushes(organization, settings):
    settings.PUSH_BACKEND = "messages.channels.push.FilePushBackend"
    configuration = publish_events(
        organization,
        {"name": "shipped", "channel": "push", "message": {"title": "Shipped", "body": "On its way"}},
    )[0]
    google = FakeGoogle()
    try:
        provider(
            organization,
            "fcm",
            {"project_id": "", "base_url": google.base_url, "timeout": 5.0},
            {"service_account_json": json.dumps(google.service_account)},
        )
        event = accept(configuration, {"pushPlatform": "gcm", "registrationToken": "tok-1"})
        assert pipeline.process(event.pk) == "processed"
        (sent,) = google.wait_for_sends(1)
    finally:
        google.stop()
    assert sent["path"] == "/v1/projects/demo-project/messages:send"
    assert sent["authorization"] == "Bearer access-1" and sent["body"]["message"]["token"] == "tok-1"
    assert Delivery.objects.get(event_link__event=event).provider == "fcm"


def test_no_organization_provider_carries_the_installations_credentials(organization, settings):
    settings.SMS_GATEWAY_URL, settings.SMS_GATEWAY_TOKEN = "https://gw.example.com", "installation-token"
    settings.SMPP_PASSWORD, settings.SMPP_SYSTEM_TYPE = "installation-password", "installation"
    settings.TWILIO_FROM, settings.TWILIO_MESSAGING_SERVICE_SID = "+15550000000", "MG" + "9" * 32
    settings.FCM_SERVICE_ACCOUNT_FILE = "/etc/installation-service-account.json"
    settings.PUSH_GATEWAY_TOKEN = "installation-push-token"
    provider(organization, "http_sms", {"url": "https://sms.example.org/send"}, {})
    provider(organization, "smpp", {"host": "127.0.0.1", "port": 2775, "system_id": "org"}, {}, name="smpp")
    provider(organization, "http_push", {"url": "https://push.example.org/send"}, {})
    gateway, smpp = (p.backend for p in backend_for("sms", organization.pk).providers)
    assert gateway.token == "" and gateway.url == "https://sms.example.org/send"
    bind = smpp.parameters()
    assert (bind.host, bind.port, bind.system_id, bind.password, bind.system_type) == (
        "127.0.0.1",
        2775,
        "org",
        "",
        "",
    )
    (push,) = (p.backend for p in backend_for("push", organization.pk).providers)
    assert push.token == ""
    fake = FakeTwilio()
    try:
        OrganizationProvider.objects.filter(organization=organization, channel="sms").delete()
        org_providers.changed()
        twilio = twilio_provider(organization, fake)
        (built,) = (p.backend for p in backend_for("sms", organization.pk).providers)
        assert (built.from_, built.messaging_service_sid, built.auth_token) == ("", "", ORG_TOKEN)
        assert built.callback_url().endswith(f"/webhooks/twilio/{twilio.pk}/status")
    finally:
        fake.stop()
