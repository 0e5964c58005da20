"""What providers said after a send, as one list (messages.provider_history): an email provider's
webhook events and an SMS provider's receipts in time order, in one shape, on the delivery's page."""

from __future__ import annotations

import datetime as dt
from html import unescape

import pytest
from django.urls import reverse
from django.utils import timezone

from messages import sms_replies
from messages.models import Delivery, ProviderEvent, SmsReceipt
from messages.provider_history import provider_history

pytestmark = pytest.mark.django_db
NOW = timezone.now()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def delivery(configuration, *, channel: str, message_id: str) -> Delivery:
    return Delivery.objects.create(
        organization=configuration.organization,
        message=configuration.message,
        channel=channel,
        recipient="+33612345678" if channel == "sms" else "jack@example.com",
        outcome="sent",
        provider_message_id=message_id,
    )


def test_receipts_and_provider_events_come_in_the_order_they_arrived(cart_configuration):
    sms = delivery(cart_configuration, channel="sms", message_id="SM1")
    email = delivery(cart_configuration, channel="email", message_id="<m1@example.com>")
    SmsReceipt.objects.create(provider="smpp", message_id="SM1", delivery=sms, status="ENROUTE",
                              received_at=NOW - dt.timedelta(minutes=3))  # fmt: skip
    ProviderEvent.objects.create(
        organization=cart_configuration.organization, delivery=email, provider="Postmark",
        provider_event_id="e1", kind="hardBounce", quarantined=True, description="mailbox gone",
        created_at=NOW - dt.timedelta(minutes=2),
    )  # fmt: skip
    SmsReceipt.objects.create(provider="smpp", message_id="SM1", delivery=sms, status="UNDELIV",
                              error_code="001", received_at=NOW - dt.timedelta(minutes=1))  # fmt: skip
    history = provider_history([sms, email])
    assert not history.truncated
    assert [(r.source, r.kind, r.status, r.description, r.delivery_id) for r in history.reports] == [
        ("smsReceipt", "other", "ENROUTE", "ENROUTE", sms.pk),
        ("webhook", "hardBounce", "", "mailbox gone", email.pk),
        ("smsReceipt", "failed", "UNDELIV", "UNDELIV (error 001)", sms.pk),
    ]
    assert [r.kind_label for r in history.reports] == ["Other", "Hard bounce", "Failed"]


def test_a_receipt_that_outran_its_delivery_is_found_by_the_message_id(cart_configuration):
    sms_replies.record_receipt(provider="twilio", message_id="SM9", status="delivered")
    sms = delivery(cart_configuration, channel="sms", message_id="SM9")
    (report,) = provider_history([sms]).reports
    assert report.delivery_id == sms.pk and report.kind == "delivered" and report.provider == "twilio"


def test_the_history_is_bounded_and_says_so(cart_configuration):
    sms = delivery(cart_configuration, channel="sms", message_id="SM1")
    for status in ("ENROUTE", "ACCEPTD", "DELIVRD"):
        sms_replies.record_receipt(provider="smpp", message_id="SM1", status=status)
    history = provider_history([sms], limit=2)
    assert history.truncated and [r.status for r in history.reports] == ["ENROUTE", "ACCEPTD"]
    assert provider_history([]).reports == []


def test_the_delivery_page_lists_receipts_and_provider_events_in_one_list(
    client, marketer, cart_configuration
):
    sms = delivery(cart_configuration, channel="sms", message_id="SM1")
    sms_replies.record_receipt(provider="twilio", message_id="SM1", status="sent")
    sms_replies.record_receipt(provider="twilio", message_id="SM1", status="undelivered", error_code="30005")
    client.force_login(marketer)
    html = unescape(
        client.get(reverse("admin:transactional_delivery_change", args=[sms.pk])).content.decode()
    )
    assert "What the provider said later" in html
    sent, undelivered = html.index("(twilio): sent"), html.index("(twilio): undelivered (error 30005)")
    assert sent < undelivered and "<strong>Failed</strong>" in html
