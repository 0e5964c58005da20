"""Email through an email service provider (django-anymail's Postmark backend, pointed at a fake
Postmark API on loopback), and the provider's tracking webhooks: a bounce or a complaint after the
send is joined to its delivery by the provider's message id, quarantines the address, is recorded once
however often it comes, shows on the delivery and in the event's timeline, and is notified."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core import mail
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from campaign.models import Quarantine
from campaign.roles import MARKETERS
from events import pipeline, timeline, webhooks
from events.models import Event, WebhookEndpoint, WebhookNotification
from events.schema import validate_event
from events.services import ingest
from messages.channels import backend_for
from messages.models import Delivery, ProviderEvent
from tests.conftest import seed_body
from tests.factories import member
from tests.postmark import TOKEN, FakePostmark, bounce, spam_complaint

pytestmark = pytest.mark.django_db
FUTURE = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.000Z")
WEBHOOK = "/anymail/postmark/tracking/"
SECRET = "postmark:a-long-webhook-secret"


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


@pytest.fixture
def postmark(settings):
    with FakePostmark() as fake:
        settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
        settings.ANYMAIL = {
            "POSTMARK_SERVER_TOKEN": TOKEN,
            "POSTMARK_API_URL": fake.url,
            "WEBHOOK_SECRET": SECRET,
        }
        backend_for.cache_clear()
        yield fake
        backend_for.cache_clear()


def send(configuration, email: str = "jack@example.com") -> Event:
    body = {**seed_body(scheduled=None, expiration=FUTURE), "email": email}
    event, _ = ingest(
        configuration=configuration, validated=validate_event(configuration.published_schema, body)
    )
    pipeline.process(event.pk)
    event.refresh_from_db()
    return event


def post(client, payload: dict, *, credentials: str = SECRET):
    return client.post(
        WEBHOOK,
        data=json.dumps(payload),
        content_type="application/json",
        HTTP_AUTHORIZATION=basic(credentials),
    )


def test_an_email_sent_through_postmark_keeps_postmarks_message_id(cart_configuration, postmark):
    event = send(cart_configuration)
    assert event.status == "processed"
    (sent,) = postmark.sent
    assert sent["To"] == "jack@example.com" and "your cart is waiting" in sent["Subject"]
    delivery = event.deliveries.get()
    assert delivery.outcome == "sent" and delivery.provider_message_id == sent["MessageID"]
    assert delivery.provider_response == "accepted by the provider: sent"


def test_anymails_test_backend_sets_the_message_id_too(cart_configuration, settings):
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    backend_for.cache_clear()
    try:
        delivery = send(cart_configuration).deliveries.get()
    finally:
        backend_for.cache_clear()
    (message,) = mail.outbox
    assert delivery.provider_message_id == str(message.anymail_status.message_id)


def test_a_provider_refusing_our_credentials_is_a_temporary_failure(cart_configuration, postmark, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "POSTMARK_SERVER_TOKEN": "wrong"}
    backend_for.cache_clear()
    event = send(cart_configuration)
    assert event.status == "pending"  # a retry is scheduled
    delivery = event.deliveries.get()
    assert delivery.outcome == "temporaryFailure" and "401" in delivery.provider_response


def test_an_inactive_recipient_is_a_permanent_failure_that_quarantines(
    organization, cart_configuration, postmark
):
    postmark.refusals["gone@example.com"] = (
        422,
        406,
        "You tried to send to a recipient that has been marked as inactive.\n"
        "Found inactive addresses: gone@example.com.\n"
        "Inactive recipients are ones that have generated a hard bounce or a spam complaint. ",
    )
    event = send(cart_configuration, email="gone@example.com")
    assert event.status == "deliveryFailed"
    assert event.deliveries.get().outcome == "permanentFailure"
    assert Quarantine.objects.filter(organization=organization, address="gone@example.com").exists()


def test_a_message_the_provider_finds_invalid_fails_without_quarantine(cart_configuration, postmark):
    postmark.refusals["jack@example.com"] = (422, 300, "Invalid email request")
    event = send(cart_configuration)
    assert event.status == "deliveryFailed"
    assert "422" in event.deliveries.get().provider_response
    assert not Quarantine.objects.exists()


def test_a_late_hard_bounce_quarantines_the_address_and_shows_on_the_delivery(
    client, organization, cart_configuration, postmark
):
    event = send(cart_configuration)
    delivery = event.deliveries.get()
    answer = post(client, bounce(message_id=delivery.provider_message_id, email="jack@example.com"))
    assert answer.status_code == 200
    (row,) = delivery.provider_events.all()
    assert row.kind == "hardBounce" and row.quarantined and row.provider == "Postmark"
    assert row.occurred_at == dt.datetime(2026, 11, 29, 22, 5, 54, 907025, tzinfo=dt.UTC)
    assert "mailbox not found" in row.description
    assert Quarantine.objects.filter(
        organization=organization, channel="email", address="jack@example.com"
    ).exists()
    event.refresh_from_db()
    assert event.status == "processed"  # its one final status stays
    # The event's timeline tells it (the address masked), and so does the delivery's page.
    step = timeline.event_timeline(event)["steps"][-1]
    assert step["step"] == "providerEvent" and step["kind"] == "hardBounce" and step["quarantined"] is True
    assert step["provider"] == "Postmark" and "jack@example.com" not in str(step)
    client.force_login(member(organization=organization, role=MARKETERS))
    page = client.get(reverse("admin:transactional_delivery_change", args=[delivery.pk])).content.decode()
    assert "Hard bounce" in page and "address quarantined" in page
    # The next event to that address is not sent.
    assert send(cart_configuration).status == "ignored"
    assert len(postmark.sent) == 1


def test_a_spam_complaint_quarantines_the_address(client, organization, cart_configuration, postmark):
    delivery = send(cart_configuration, email="Jill@Example.com").deliveries.get()
    assert (
        post(
            client, spam_complaint(message_id=delivery.provider_message_id, email="Jill@Example.com")
        ).status_code
        == 200
    )
    (row,) = delivery.provider_events.all()
    assert row.kind == "complaint" and row.quarantined
    assert Quarantine.objects.filter(organization=organization, address="jill@example.com").exists()


def test_a_soft_bounce_is_recorded_without_quarantine(client, organization, cart_configuration, postmark):
    delivery = send(cart_configuration).deliveries.get()
    post(client, bounce(message_id=delivery.provider_message_id, email="jack@example.com", kind="SoftBounce"))
    (row,) = delivery.provider_events.all()
    assert row.kind == "softBounce" and not row.quarantined
    assert not Quarantine.objects.exists()


def test_the_same_provider_event_twice_is_recorded_once(client, cart_configuration, postmark):
    delivery = send(cart_configuration).deliveries.get()
    payload = bounce(message_id=delivery.provider_message_id, email="jack@example.com")
    assert post(client, payload).status_code == 200
    assert post(client, payload).status_code == 200  # the provider is told it arrived: no more retries
    assert delivery.provider_events.count() == 1
    # Another event of the same message (another id) is another row.
    post(client, spam_complaint(message_id=delivery.provider_message_id, email="jack@example.com"))
    assert delivery.provider_events.count() == 2


@pytest.mark.parametrize("credentials", ["postmark:wrong", "someone:else"])
def test_a_webhook_with_bad_credentials_is_rejected_and_records_nothing(
    client, cart_configuration, postmark, credentials
):
    delivery = send(cart_configuration).deliveries.get()
    answer = post(
        client,
        bounce(message_id=delivery.provider_message_id, email="jack@example.com"),
        credentials=credentials,
    )
    assert answer.status_code == 400
    answer = client.post(
        WEBHOOK,
        data=json.dumps(bounce(message_id=delivery.provider_message_id, email="jack@example.com")),
        content_type="application/json",
    )
    assert answer.status_code == 400
    assert not ProviderEvent.objects.exists() and not Quarantine.objects.exists()


def test_without_a_webhook_secret_the_webhooks_are_off(client, cart_configuration, postmark, settings):
    settings.ANYMAIL = {k: v for k, v in settings.ANYMAIL.items() if k != "WEBHOOK_SECRET"}
    delivery = send(cart_configuration).deliveries.get()
    answer = post(client, bounce(message_id=delivery.provider_message_id, email="jack@example.com"))
    assert answer.status_code == 404
    assert not ProviderEvent.objects.exists() and not Quarantine.objects.exists()


def test_a_bounce_of_an_unknown_message_records_nothing(client, cart_configuration, postmark):
    send(cart_configuration)
    old = {**bounce(message_id="not-ours", email="jack@example.com"), "BouncedAt": "2026-01-05T16:33:54Z"}
    assert post(client, old).status_code == 200  # not ours: the provider need not send it again
    assert not ProviderEvent.objects.exists() and not Quarantine.objects.exists()


def test_a_bounce_faster_than_the_deliverys_record_is_asked_again(client, cart_configuration, postmark):
    """The worker records a delivery with its attempt's end: a provider may tell of it before."""
    now = timezone.now().isoformat().replace("+00:00", "Z")
    payload = {**bounce(message_id="sent-a-moment-ago", email="jack@example.com"), "BouncedAt": now}
    assert post(client, payload).status_code == 503
    assert not ProviderEvent.objects.exists()
    delivery = send(cart_configuration).deliveries.get()
    Delivery.objects.filter(pk=delivery.pk).update(provider_message_id="sent-a-moment-ago")
    assert post(client, payload).status_code == 200  # the provider's next try
    assert delivery.provider_events.get().kind == "hardBounce"


def test_a_late_bounce_is_notified_as_message_bounced_once(
    client, organization, cart_configuration, postmark, settings
):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    endpoint = WebhookEndpoint(
        organization=organization, url="http://127.0.0.1:9/hooks", bounces=True, final_statuses=False
    )
    webhooks.create_endpoint(endpoint=endpoint)
    event = send(cart_configuration)
    delivery = event.deliveries.get()
    post(client, bounce(message_id=delivery.provider_message_id, email="jack@example.com"))
    post(client, spam_complaint(message_id=delivery.provider_message_id, email="jack@example.com"))
    webhooks.store_notifications()
    (notification,) = WebhookNotification.objects.filter(endpoint=endpoint, kind="message.bounced")
    data = notification.payload["data"]
    assert data["PKey"] == event.pkey and data["bounceType"] == "hard" and data["channel"] == "email"
    assert data["reason"] == "550 5.1.1"  # the codes of Postmark's details, not its text
    assert notification.source_id == delivery.pk
    assert Delivery.objects.get(pk=delivery.pk).outcome == "sent"


def test_a_persons_export_carries_the_providers_events_and_forget_erases_them(
    client, cart_configuration, postmark
):
    delivery = send(cart_configuration).deliveries.get()
    post(client, bounce(message_id=delivery.provider_message_id, email="jack@example.com"))
    out = io.StringIO()
    call_command("export_person", "geometrixx", "jack@example.com", stdout=out)
    (exported,) = json.loads(out.getvalue())["deliveries"]
    (told,) = exported["providerEvents"]
    assert told["kind"] == "hardBounce" and told["provider"] == "Postmark" and told["quarantined"] is True
    call_command("forget", "geometrixx", "jack@example.com", stdout=io.StringIO())
    assert not ProviderEvent.objects.exists()


MAILGUN_KEY = "mailgun-webhook-signing-key"


def mailgun_event(event_data: dict, *, key: str = MAILGUN_KEY, token: str = "a" * 50) -> dict:
    """Mailgun's webhook body: the event, and its signature block (HMAC-SHA256 of timestamp + token)."""
    timestamp = "1796594400"
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": event_data,
    }


def mailgun_failed(message_id: str, recipient: str) -> dict:
    """Mailgun's permanent failure (a hard bounce), as its documentation shows it."""
    return {
        "event": "failed",
        "id": "G9Bn5sl1TC6nu79C8C0bwg",
        "timestamp": 1796594400.0,
        "severity": "permanent",
        "reason": "bounce",
        "recipient": recipient,
        "delivery-status": {
            "code": 550,
            "message": "5.1.1 The email account that you tried to reach does not exist.",
            "description": "",
        },
        "message": {"headers": {"to": recipient, "message-id": message_id, "subject": "Your cart"}},
    }


def test_mailguns_signed_bounce_quarantines_and_a_bad_signature_is_rejected(
    client, organization, cart_configuration, postmark, settings
):
    settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}
    delivery = send(cart_configuration).deliveries.get()
    # As Mailgun's API answers a send: its id in angle brackets (its webhooks send it without).
    Delivery.objects.filter(pk=delivery.pk).update(provider_message_id="<20261129.1@mg.example.com>")
    url = "/anymail/mailgun/tracking/"
    forged = mailgun_event(mailgun_failed("20261129.1@mg.example.com", "jack@example.com"), key="not-the-key")
    answer = client.post(
        url, data=json.dumps(forged), content_type="application/json", HTTP_AUTHORIZATION=basic(SECRET)
    )
    assert answer.status_code == 400 and not ProviderEvent.objects.exists()
    signed = mailgun_event(mailgun_failed("20261129.1@mg.example.com", "jack@example.com"))
    for _ in range(2):  # Mailgun retries: the signature's token is its event's id
        answer = client.post(
            url, data=json.dumps(signed), content_type="application/json", HTTP_AUTHORIZATION=basic(SECRET)
        )
        assert answer.status_code == 200
    (row,) = delivery.provider_events.all()
    assert row.provider == "Mailgun" and row.kind == "hardBounce" and "does not exist" in row.description
    assert Quarantine.objects.filter(organization=organization, address="jack@example.com").exists()


def test_the_deploy_check_warns_of_a_provider_without_webhook_secret(settings):
    from campaign.checks import production_settings

    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": TOKEN}
    assert "campaign.W004" in [problem.id for problem in production_settings(None)]
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": TOKEN, "WEBHOOK_SECRET": SECRET}
    assert "campaign.W004" not in [problem.id for problem in production_settings(None)]


def test_the_provider_and_its_settings_come_from_the_environment(tmp_path):
    show = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.EMAIL_BACKEND, s.ANYMAIL]))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMAIL_", "ANYMAIL_", "DATABASE_URL"))}
    env.update(
        DJANGO_SETTINGS_MODULE="campaign.settings",
        VAR_DIR=str(tmp_path),
        EMAIL_BACKEND="anymail.backends.postmark.EmailBackend",
        ANYMAIL_POSTMARK_SERVER_TOKEN="token",
        ANYMAIL_WEBHOOK_SECRET="user:pass",
        ANYMAIL_IGNORE_RECIPIENT_STATUS="false",
    )
    root = Path(__file__).resolve().parents[2]
    output = subprocess.run(
        [sys.executable, "-c", show], cwd=root, env=env, capture_output=True, text=True, check=True
    )
    backend, anymail = json.loads(output.stdout)
    assert backend == "anymail.backends.postmark.EmailBackend"
    assert anymail == {
        "POSTMARK_SERVER_TOKEN": "token",
        "WEBHOOK_SECRET": "user:pass",
        "IGNORE_RECIPIENT_STATUS": False,
    }
