"""SMS through Twilio's REST API against a loopback fake, and Twilio's signed webhooks (status
callbacks recorded on the delivery, inbound STOP replies)."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone
from twilio.request_validator import RequestValidator

from campaign.models import Quarantine
from messages.channels import Recipient, RenderedMessage
from messages.channels.twilio_sms import TwilioSmsBackend
from messages.models import Delivery, SmsReceipt
from messages.sms_replies import receipts_of
from tests.factories import ProfileFactory
from tests.twilio import SID, TOKEN, FakeTwilio

NUMBER = "+33612345678"


@pytest.fixture
def twilio(settings):
    fake = FakeTwilio()
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = SID, TOKEN
    settings.TWILIO_BASE_URL = fake.url
    settings.TWILIO_FROM = "+15005550006"
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    settings.TWILIO_WEBHOOK_BASE_URL = "https://campaign.example.com"
    yield fake
    fake.stop()


def send(text: str = "Hello", **overrides):
    rendered = RenderedMessage(parts={"text": text}, **overrides)
    return TwilioSmsBackend().send(rendered, Recipient(address=NUMBER))


def test_a_send_posts_the_form_twilio_expects(twilio):
    result = send("Your code is 1234", expires_at=timezone.now() + dt.timedelta(hours=1))
    assert result.sent and result.provider_message_id == "SM1"
    (request,) = twilio.requests
    assert request["path"] == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert request["authorization"] == "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    form = request["form"]
    assert form["To"] == NUMBER and form["From"] == "+15005550006" and form["Body"] == "Your code is 1234"
    assert form["StatusCallback"] == "https://campaign.example.com/webhooks/twilio/status"
    assert 3590 <= int(form["ValidityPeriod"]) <= 3600


def test_a_messaging_service_replaces_the_from_number(settings, twilio):
    settings.TWILIO_MESSAGING_SERVICE_SID = "MG" + "1" * 32
    send()
    form = twilio.requests[0]["form"]
    assert form["MessagingServiceSid"] == "MG" + "1" * 32 and "From" not in form


def test_a_far_expiration_is_bounded_to_twilios_maximum(twilio):
    send(expires_at=timezone.now() + dt.timedelta(days=3))
    assert twilio.requests[0]["form"]["ValidityPeriod"] == "36000"


@pytest.mark.parametrize(
    ("status", "code", "outcome", "quarantines"),
    [
        (400, 21211, "permanentFailure", True),  # invalid To
        (400, 21602, "permanentFailure", False),  # empty body: the message's fault
        (429, 20429, "temporaryFailure", True),
        (503, 20500, "temporaryFailure", True),
        (401, 20003, "temporaryFailure", True),
    ],
)
def test_twilio_errors_are_classified(twilio, status, code, outcome, quarantines):
    twilio.answer = (status, {"code": code, "message": "refused", "status": status})
    result = send()
    assert result.outcome == outcome
    assert str(code) in result.provider_response
    if outcome == "permanentFailure":
        assert result.quarantines is quarantines


def test_an_unreachable_twilio_is_a_temporary_failure(twilio):
    twilio.stop()
    result = send()
    assert result.outcome == "temporaryFailure" and not result.outcome_unknown  # safe to fail over


def test_a_twilio_that_takes_the_request_and_never_answers_is_an_unknown_outcome(settings, twilio):
    import socket

    settings.TWILIO_TIMEOUT_SECONDS = 0.5
    with socket.create_server(("127.0.0.1", 0)) as silent:
        settings.TWILIO_BASE_URL = f"http://127.0.0.1:{silent.getsockname()[1]}"
        result = send()
    assert result.outcome == "temporaryFailure" and result.provider_fault and result.outcome_unknown
    assert TwilioSmsBackend().max_send_seconds == 0.5 + 1


# --- webhooks ----------------------------------------------------------------------------------


def post_signed(client, name: str, form: dict, *, token: str = TOKEN, signature: str | None = None):
    url = "https://campaign.example.com" + reverse(name)
    if signature is None:
        signature = RequestValidator(token).compute_signature(url, form)
    headers = {"HTTP_X_TWILIO_SIGNATURE": signature} if signature else {}
    return client.post(reverse(name), form, **headers)


@pytest.fixture
def delivery(cart_configuration) -> Delivery:
    return Delivery.objects.create(
        organization=cart_configuration.organization,
        message=cart_configuration.message,
        channel="sms",
        recipient=NUMBER,
        outcome="sent",
        provider_message_id="SM1",
    )


def test_a_signed_status_callback_is_recorded_on_the_delivery(client, twilio, delivery):
    form = {"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "30003", "To": NUMBER}
    response = post_signed(client, "twilio-status", form)
    assert response.status_code == 204
    (receipt,) = receipts_of(delivery)
    assert (receipt.provider, receipt.status, receipt.error_code) == ("twilio", "undelivered", "30003")
    assert receipt.delivery == delivery


def test_without_a_twilio_base_the_public_url_is_the_one_base_of_callbacks_and_signatures(
    client, settings, twilio, delivery
):
    """The callback a send asks for, an organization's provider's and the URL a signature is checked
    over share one base (twilio_webhook_base): Twilio signs the URL it was given."""
    from messages.channels.twilio_sms import twilio_webhook_base
    from messages.provider_kinds import twilio_callback_url

    settings.TWILIO_WEBHOOK_BASE_URL, settings.PUBLIC_URL = "", "https://campaign.example.com/"
    assert twilio_webhook_base() == "https://campaign.example.com"
    assert TwilioSmsBackend().callback_url() == "https://campaign.example.com/webhooks/twilio/status"
    assert twilio_callback_url(7).startswith("https://campaign.example.com/webhooks/twilio/7/")
    form = {"MessageSid": "SM1", "MessageStatus": "delivered", "To": NUMBER}
    assert post_signed(client, "twilio-status", form).status_code == 204  # signed over PUBLIC_URL
    settings.PUBLIC_URL = ""
    assert TwilioSmsBackend().callback_url() == ""  # no base: no status callback asked for
    assert post_signed(client, "twilio-status", form).status_code == 403  # checked over testserver


@pytest.mark.parametrize("signature", ["", "bm90IHRoZSBzaWduYXR1cmU=", "wrong-token"])
def test_an_unsigned_or_badly_signed_status_callback_is_refused(client, twilio, delivery, signature):
    form = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    if signature == "wrong-token":
        response = post_signed(client, "twilio-status", form, token="another-token")
    else:
        response = post_signed(client, "twilio-status", form, signature=signature)
    assert response.status_code == 403
    assert not SmsReceipt.objects.exists()


def test_a_status_callback_without_its_fields_is_refused(client, twilio, delivery):
    assert post_signed(client, "twilio-status", {"MessageStatus": "delivered"}).status_code == 400
    assert not SmsReceipt.objects.exists()


def test_a_signed_inbound_stop_opts_the_profile_out(client, twilio, delivery):
    organization = delivery.organization
    profile = ProfileFactory(organization=organization, mobile_phone=NUMBER)
    response = post_signed(client, "twilio-inbound", {"From": NUMBER, "To": "+15005550006", "Body": "STOP"})
    assert response.status_code == 200 and b"<Response>" in response.content
    profile.refresh_from_db()
    assert profile.opted_out_sms and not profile.opted_out_email
    assert Quarantine.objects.filter(organization=organization, channel="sms", address=NUMBER).exists()


def test_an_unsigned_inbound_stop_changes_nothing(client, twilio, delivery):
    profile = ProfileFactory(organization=delivery.organization, mobile_phone=NUMBER)
    response = post_signed(client, "twilio-inbound", {"From": NUMBER, "Body": "STOP"}, signature="")
    assert response.status_code == 403
    profile.refresh_from_db()
    assert not profile.opted_out_sms and not Quarantine.objects.exists()


@pytest.mark.parametrize("body", ["stop", "Arrêt", "UNSUBSCRIBE me", "quit."])
def test_the_usual_keywords_opt_out(client, twilio, delivery, body):
    profile = ProfileFactory(organization=delivery.organization, mobile_phone=NUMBER)
    post_signed(client, "twilio-inbound", {"From": NUMBER, "Body": body})
    profile.refresh_from_db()
    assert profile.opted_out_sms


def test_a_stop_from_a_number_nobody_sent_to_changes_nothing(client, twilio, delivery):
    post_signed(client, "twilio-inbound", {"From": "+33699999999", "Body": "STOP"})
    assert not Quarantine.objects.exists()


def test_the_delivery_page_shows_its_receipts(client, twilio, delivery, marketer, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    post_signed(client, "twilio-status", {"MessageSid": "SM1", "MessageStatus": "sent"})
    post_signed(
        client, "twilio-status", {"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "30005"}
    )
    client.force_login(marketer)
    html = client.get(reverse("admin:transactional_delivery_change", args=[delivery.pk])).content.decode()
    assert "What the provider said later" in html
    assert "(twilio): sent" in html and "(twilio): undelivered (error 30005)" in html


def test_over_long_webhook_fields_are_bounded(client, twilio, delivery):
    form = {"MessageSid": "SM1", "MessageStatus": "d" * 5000, "ErrorCode": "9" * 5000, "Extra": "x" * 5000}
    assert post_signed(client, "twilio-status", form).status_code == 204
    receipt = SmsReceipt.objects.get()
    assert (len(receipt.status), len(receipt.error_code), len(receipt.raw)) == (32, 32, 2000)


def test_a_repeated_status_callback_is_kept_once(client, twilio, delivery):
    form = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    assert post_signed(client, "twilio-status", form).status_code == 204
    assert post_signed(client, "twilio-status", form).status_code == 204
    assert [r.status for r in receipts_of(delivery)] == ["delivered"]
