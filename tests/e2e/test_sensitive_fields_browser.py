"""Sensitive fields in a real browser (Playwright driving Debian's chromium): an administrator marks a
field sensitive and publishes; the event's value goes out in the email, and no admin page a
marketer opens shows it (the event list and page, the execution list and the delivery's page with
its rendered HTML)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.utils import timezone
from playwright.sync_api import expect

from events import pipeline
from events.models import EventConfiguration, EventField
from events.publication import publish_message
from events.schema import validate_event
from events.services import ingest
from tests.e2e import test_admin_browser
from tests.e2e.test_admin_browser import SCREENSHOTS, log_in

browser = test_admin_browser.browser
_roles_and_fast_hashing = test_admin_browser._roles_and_fast_hashing

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SECRET = "5555-4444-3333-1111"


def test_a_field_marked_sensitive_is_sent_and_never_shown_in_the_admin(
    browser, live_server, administrator, marketer, organization
):
    page = log_in(browser, live_server, administrator, "/admin/events/eventconfiguration/add/")
    page.fill("#id_name", "EVTcardIssued")
    page.fill("#id_fields-0-name", "firstName")
    page.click("#fields-group .add-row a")
    page.fill("#id_fields-1-name", "cardNumber")
    page.check("#id_fields-1-sensitive")
    page.click("input[name=_publish]")
    expect(page.locator(".messagelist")).to_contain_text("EVTcardIssued published")
    expect(page.locator("#id_fields-1-sensitive")).to_be_checked()
    expect(page.locator("#id_fields-0-sensitive")).not_to_be_checked()

    configuration = EventConfiguration.objects.get(name="cardIssued")
    assert EventField.objects.get(configuration=configuration, name="cardNumber").sensitive
    assert configuration.published_schema["sensitiveFields"] == ["cardNumber"]
    message = configuration.message
    message.load_content(
        {
            "subject": "{{ ctx.firstName }}, your card",
            "html": "<p>Your card: {{ ctx.cardNumber }}</p>",
            "text": "Your card: {{ ctx.cardNumber }}",
        }
    )
    message.save()
    publish_message(message=message, user=marketer)
    configuration.refresh_from_db()

    future = (timezone.now() + dt.timedelta(days=1)).isoformat()
    body = {
        "email": "jane@example.com",
        "expiration": future,
        "ctx": {"firstName": "Jane", "cardNumber": SECRET},
    }
    event, _ = ingest(
        configuration=configuration, validated=validate_event(configuration.published_schema, body)
    )
    assert pipeline.process(event.pk) == "processed"
    (sent,) = mail.outbox
    assert f"Your card: {SECRET}" in sent.body
    delivery = event.deliveries.get()

    page = log_in(browser, live_server, marketer, "/admin/events/event/")
    for path in (
        "/admin/events/event/",
        f"/admin/events/event/{event.pk}/change/",
        "/admin/transactional/delivery/",
        f"/admin/transactional/delivery/{delivery.pk}/change/",
    ):
        page.goto(f"{live_server.url}{path}")
        expect(page.locator("body")).not_to_contain_text(SECRET)
        assert SECRET not in page.content(), path
        for frame in page.frames:
            assert SECRET not in frame.content(), path
    # The delivery's page shows what was sent, with the value masked.
    expect(page.locator("body")).to_contain_text("Your card: ***")
    page.goto(f"{live_server.url}/admin/events/event/{event.pk}/change/")
    expect(page.locator("body")).to_contain_text("***")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "sensitive-event-page.png"))
