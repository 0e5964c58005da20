"""End to end: an SMS event through the real worker to Twilio's REST API (a fake on loopback), then
Twilio's signed status callback and a STOP reply posted to the real web process."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

import pytest
from twilio.request_validator import RequestValidator

from campaign.models import Quarantine
from messages.models import Delivery, SmsReceipt
from messages.sms_replies import receipts_of
from tests.conftest import publish_events
from tests.e2e.stack import stack_processes_for
from tests.e2e.test_event_flow import final_status, post_event
from tests.factories import ProfileFactory
from tests.smtp import free_port
from tests.twilio import SID, TOKEN, FakeTwilio

pytestmark = [pytest.mark.e2e]
NUMBER = "+33612345678"
CODE = {
    "name": "otpCode",
    "channel": "sms",
    "fields": [{"name": "code", "type": "text"}],
    "message": {"text": "Your code is {{ ctx.code }}"},
}
CODE_URL = "/geometrixx/campaign/mcgeometrixx/EVTotpCode"


@pytest.fixture(scope="module")
def twilio():
    fake = FakeTwilio()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def stack_processes(django_db_setup, django_db_blocker, smtp, twilio, tmp_path_factory):
    """The stack of conftest.py, its SMS channel on Twilio's backend pointed at the fake."""
    log_dir = tmp_path_factory.mktemp("twilio")
    port = free_port()  # the public URL Twilio calls back, known before the web starts
    settings = {
        "SMS_BACKEND": "messages.channels.twilio_sms.TwilioSmsBackend",
        "TWILIO_ACCOUNT_SID": SID,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "TWILIO_FROM": "+15005550006",
        "TWILIO_BASE_URL": twilio.url,
        "TWILIO_WEBHOOK_BASE_URL": f"http://127.0.0.1:{port}",
    }
    yield from stack_processes_for(
        django_db_blocker, smtp_port=smtp.port, log_dir=log_dir, web_port=port, **settings
    )


def post_form(url: str, form: dict, *, token: str = TOKEN) -> int:
    signature = RequestValidator(token).compute_signature(url, form)
    request = urllib.request.Request(
        url,
        data=urllib.parse.urlencode(form).encode(),
        headers={"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_the_worker_sends_through_twilio_and_its_callbacks_are_recorded(stack, geometrixx, twilio):
    geometrixx.sms_sender = "Geometrixx"
    geometrixx.save()
    publish_events(geometrixx, dict(CODE))
    profile = ProfileFactory(organization=geometrixx, mobile_phone=NUMBER)
    headers = stack.token_headers(geometrixx)
    pkey = post_event(stack, headers, {"mobilePhone": NUMBER, "ctx": {"code": "4821"}}, url=CODE_URL)
    assert final_status(stack, headers, pkey, url=CODE_URL) == "processed"
    (request,) = twilio.requests
    form = request["form"]
    # The organization's SMS sender (an alphanumeric sender id), TWILIO_FROM only when there is none.
    assert (form["To"], form["From"], form["Body"]) == (NUMBER, "Geometrixx", "Your code is 4821")
    assert form["StatusCallback"] == f"{stack.base_url}/webhooks/twilio/status"
    delivery = Delivery.objects.get(channel="sms")
    assert delivery.provider_message_id == "SM1"

    callback = {"MessageSid": "SM1", "MessageStatus": "delivered", "To": NUMBER}
    assert post_form(form["StatusCallback"], callback, token="not-the-token") == 403
    assert not SmsReceipt.objects.exists()
    assert post_form(form["StatusCallback"], callback) == 204
    assert [r.status for r in receipts_of(delivery)] == ["delivered"]

    assert post_form(f"{stack.base_url}/webhooks/twilio/inbound", {"From": NUMBER, "Body": "STOP"}) == 200
    profile.refresh_from_db()
    assert profile.opted_out_sms
    assert Quarantine.objects.filter(organization=geometrixx, channel="sms", address=NUMBER).exists()
