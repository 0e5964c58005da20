"""End to end: email through an email service provider (anymail's Postmark backend, pointed at a fake
Postmark API on loopback) sent by the real worker, then the provider's bounce webhook POSTed to the
real web server: the delivery records it, the address is quarantined, the timeline tells it."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import urllib.request

import pytest
from django.utils import timezone

from campaign.models import Quarantine
from messages.models import Delivery, ProviderEvent
from tests.conftest import CART_EVENT, CART_URL, SEED_BODY, publish_events
from tests.e2e.stack import http, stack_processes_for
from tests.e2e.test_event_flow import final_status, post_event
from tests.postmark import TOKEN, FakePostmark, bounce

pytestmark = [pytest.mark.e2e]
FUTURE = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.000Z")
SECRET = "postmark:an-e2e-webhook-secret"


@pytest.fixture(scope="module")
def postmark():
    with FakePostmark() as fake:
        yield fake


@pytest.fixture(scope="module")
def stack_processes(django_db_setup, django_db_blocker, smtp, postmark, tmp_path_factory):
    """The stack of conftest.py, its email going to Postmark's API (the fake) through anymail."""
    log_dir = tmp_path_factory.mktemp("postmark")
    provider = {
        "EMAIL_URL": "",
        "EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
        "ANYMAIL_POSTMARK_SERVER_TOKEN": TOKEN,
        "ANYMAIL_POSTMARK_API_URL": postmark.url,
        "ANYMAIL_WEBHOOK_SECRET": SECRET,
    }
    yield from stack_processes_for(django_db_blocker, smtp_port=smtp.port, log_dir=log_dir, **provider)


def webhook(base_url: str, payload: dict, credentials: str) -> int:
    request = urllib.request.Request(
        f"{base_url}/anymail/postmark/tracking/",
        data=json.dumps(payload).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(credentials.encode()).decode(),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_bounce_after_a_send_through_postmark_quarantines_and_shows_in_the_timeline(
    stack, geometrixx, postmark
):
    publish_events(geometrixx, copy.deepcopy(CART_EVENT))
    headers = stack.token_headers(geometrixx)
    body = {**copy.deepcopy(SEED_BODY), "expiration": FUTURE, "email": "bounces@example.com"}
    pkey = post_event(stack, headers, body)
    assert final_status(stack, headers, pkey) == "processed"
    (sent,) = [s for s in postmark.sent if s["To"] == "bounces@example.com"]
    assert not stack.mailbox.messages  # nothing went over SMTP
    delivery = Delivery.objects.get(event_link__event__pkey=pkey)
    assert delivery.provider_message_id == sent["MessageID"]

    payload = bounce(message_id=sent["MessageID"], email="bounces@example.com", bounce_id=777001)
    assert webhook(stack.base_url, payload, "postmark:wrong") == 400
    assert not ProviderEvent.objects.exists()
    assert webhook(stack.base_url, payload, SECRET) == 200
    assert webhook(stack.base_url, payload, SECRET) == 200  # Postmark sends it again
    (row,) = ProviderEvent.objects.filter(delivery=delivery)
    assert row.kind == "hardBounce" and row.quarantined
    assert Quarantine.objects.filter(organization=geometrixx, address="bounces@example.com").exists()

    status, told = http("GET", f"{stack.base_url}{CART_URL}/{pkey}/timeline", headers=headers)
    assert status == 200 and told["status"] == "processed"
    assert [s["kind"] for s in told["steps"] if s["step"] == "providerEvent"] == ["hardBounce"]

    again = post_event(stack, headers, body)
    assert final_status(stack, headers, again) == "ignored"
    assert len([s for s in postmark.sent if s["To"] == "bounces@example.com"]) == 1
