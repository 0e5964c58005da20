"""The event's page tells its story: the same timeline as the API's, in words, rows in order."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import strip_tags

from campaign.models import Quarantine
from events import pipeline
from events.models import Event
from events.schema import validate_event
from events.services import ingest
from messages import sms_replies
from tests.conftest import seed_body

pytestmark = pytest.mark.django_db
FUTURE = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.000Z")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def accept(configuration, **overrides) -> Event:
    body = {**seed_body(scheduled=None, expiration=FUTURE), **overrides}
    event, _ = ingest(
        configuration=configuration, validated=validate_event(configuration.published_schema, body)
    )
    return event


def timeline_rows(client, event) -> list[tuple[str, str]]:
    response = client.get(reverse("admin:events_event_change", args=[event.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    (section,) = re.findall(r'<div class="module" id="event-timeline">(.*?)</div>', html, re.S)
    rows = re.findall(
        r'<tr class="timeline-step"><td>.*?</td><td>(.*?)</td><td>(.*?)</td></tr>', section, re.S
    )
    return [(strip_tags(step), " ".join(unescape(strip_tags(detail)).split())) for step, detail in rows]


def test_a_processed_events_page_shows_its_timeline(client, marketer, cart_configuration, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    client.force_login(marketer)
    event = accept(cart_configuration)
    assert pipeline.process(event.pk) == "processed"
    rows = timeline_rows(client, event)
    assert [step for step, _ in rows] == ["Received", "Status", "Routed", "Delivery", "Attempt", "Status"]
    assert rows[1][1].startswith("pending → processing · code claimed · worker ")
    assert rows[2][1] == "to version 1 · attempt 1"
    message_id = event.deliveries.get().provider_message_id
    assert rows[3][1].startswith("sent · Message-ID ") and message_id in rows[3][1]
    assert rows[5][1] == "processing → processed · code sent · attempt 1"
    page = client.get(reverse("admin:events_event_change", args=[event.pk])).content.decode()
    assert "Reason codes" in page


def test_an_ignored_events_page_says_its_code(client, marketer, cart_configuration, organization):
    Quarantine.objects.create(organization=organization, channel="email", address="test@example.com")
    client.force_login(marketer)
    event = accept(cart_configuration)
    assert pipeline.process(event.pk) == "ignored"
    assert timeline_rows(client, event)[-1] == (
        "Status",
        "processing → ignored · code quarantined · attempt 1",
    )


def test_a_waiting_event_shows_only_its_reception(client, marketer, cart_configuration):
    client.force_login(marketer)
    event = accept(cart_configuration)
    assert [step for step, _ in timeline_rows(client, event)] == ["Received"]


def test_another_organizations_event_page_is_not_found(client, marketer, other_organization):
    from tests.conftest import publish_events

    other = publish_events(other_organization, {"name": "secret", "channel": "email", "fields": []})[0]
    event = accept(other, ctx={})
    client.force_login(marketer)
    response = client.get(reverse("admin:events_event_change", args=[event.pk]))
    assert response.status_code in (302, 404)


def test_an_sms_receipt_shows_on_the_events_page(client, marketer, organization, settings, tmp_path):
    from tests.conftest import publish_events

    settings.CHANNEL_OUTBOX_DIR = str(tmp_path)
    (otp,) = publish_events(
        organization,
        {"name": "otp", "channel": "sms", "fields": [{"name": "code", "type": "text"}],
         "message": {"text": "Your code: {{ ctx.code }}"}},
    )  # fmt: skip
    body = {"mobilePhone": "+33612345678", "ctx": {"code": "4242"}}
    event, _ = ingest(configuration=otp, validated=validate_event(otp.published_schema, body))
    assert pipeline.process(event.pk) == "processed"
    message_id = event.deliveries.get().provider_message_id
    sms_replies.record_receipt(
        provider="twilio", message_id=message_id, status="undelivered", error_code="30005"
    )
    client.force_login(marketer)
    assert timeline_rows(client, event)[-1] == ("Provider", "failed (twilio) · undelivered (error 30005)")
