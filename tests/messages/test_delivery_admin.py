"""The execution list: a marketer browses the deliveries of their organization with filters, opens one
to see what was sent (the HTML in a sandboxed frame) and what the provider answered, and exports the
filtered list as CSV."""

from __future__ import annotations

import copy
import csv
import datetime as dt
import io
import re
from html import escape, unescape

import pytest
from django.urls import reverse
from django.utils import timezone

from campaign.csv_export import safe_cell  # a PKey may start with '-': exported defused
from campaign.roles import ADMINISTRATORS, MARKETERS
from events import pipeline
from events.models import Event
from events.schema import validate_event
from events.services import ingest
from messages.models import Delivery
from tests.conftest import CART_EVENT, publish_events, seed_body
from tests.factories import member

pytestmark = pytest.mark.django_db
FUTURE = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.000Z")
LIST = "admin:transactional_delivery_changelist"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def send(configuration, **ctx) -> Event:
    body = {**seed_body(scheduled=None, expiration=FUTURE)}
    body["ctx"] = {**body["ctx"], **ctx}
    event, _ = ingest(
        configuration=configuration, validated=validate_event(configuration.published_schema, body)
    )
    assert pipeline.process(event.pk) == "processed"
    return event


@pytest.fixture
def sent(cart_configuration) -> Delivery:
    return send(cart_configuration, firstName="Jack <b>&").deliveries.get()


@pytest.fixture
def other_sent(other_organization) -> Delivery:
    event = {**copy.deepcopy(CART_EVENT), "name": "acmeSecretLaunch"}
    configuration = publish_events(other_organization, event)[0]
    return send(configuration, firstName="AcmeOnly").deliveries.get()


def rows(response) -> list[dict[str, str]]:
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("role", [ADMINISTRATORS, MARKETERS])
def test_the_page_of_a_delivery_shows_what_was_sent_with_the_html_in_a_sandboxed_frame(
    client, organization, sent, role
):
    client.force_login(member(organization=organization, role=role))
    page = client.get(reverse("admin:transactional_delivery_change", args=[sent.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Jack &lt;b&gt;&amp;, your cart is waiting" in html  # the subject as sent, escaped
    assert "Hello Jack &lt;b&gt;&amp;, you left Leather motorbike jacket" in html  # the text part
    (frame,) = re.findall(r"<iframe[^>]*>", html)
    assert 'sandbox=""' in frame  # no script, no same origin: the email's HTML cannot act on the admin
    srcdoc = unescape(re.search(r'srcdoc="([^"]*)"', frame).group(1))
    assert srcdoc == sent.content["html"] and "<p>Hello Jack &lt;b&gt;&amp;</p>" in srcdoc
    assert escape(sent.provider_message_id) in html  # the provider's answer
    assert "script-src 'self'" in page["Content-Security-Policy"]


def test_a_failed_delivery_shows_the_providers_answer(client, marketer, sent):
    Delivery.objects.filter(pk=sent.pk).update(
        outcome="permanentFailure", provider_response="550 5.1.1 mailbox unavailable"
    )
    client.force_login(marketer)
    html = client.get(reverse("admin:transactional_delivery_change", args=[sent.pk])).content.decode()
    assert "550 5.1.1 mailbox unavailable" in html and "Permanent failure" in html


def test_the_list_is_the_own_organizations_and_filters_by_message_version_outcome_and_period(
    client, marketer, cart_configuration, sent, other_sent
):
    failed = send(cart_configuration, firstName="Failing").deliveries.get()
    Delivery.objects.filter(pk=failed.pk).update(outcome="temporaryFailure")
    old = send(cart_configuration, firstName="Old").deliveries.get()
    Delivery.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=10))
    client.force_login(marketer)
    url = reverse(LIST)

    def listed(**params) -> set[int]:
        page = client.get(url, params)
        assert page.status_code == 200
        return {
            int(pk)
            for pk in re.findall(r"/admin/transactional/delivery/(\d+)/change/", page.content.decode())
        }

    assert listed() == {sent.pk, failed.pk, old.pk}  # never the other organization's
    message = cart_configuration.message
    assert listed(message=message.pk) == {sent.pk, failed.pk, old.pk}
    assert listed(message=other_sent.message_id) == set()
    assert listed(message=message.pk, version=message.live_version.pk) == {sent.pk, failed.pk, old.pk}
    assert listed(outcome="temporaryFailure") == {failed.pk}
    assert listed(period="7d") == {sent.pk, failed.pk}
    assert listed(channel="email", outcome="sent", period="30d") == {sent.pk, old.pk}
    page = client.get(url).content.decode()
    assert "EVTacmeSecretLaunch" not in page  # not even as a filter choice
    assert client.get(reverse("admin:transactional_delivery_change", args=[other_sent.pk])).status_code in (
        302,
        404,
    )


def test_the_csv_export_has_the_rows_of_the_lists_filter_and_scope(
    client, marketer, cart_configuration, sent, other_sent
):
    failed = send(cart_configuration, firstName="Failing").deliveries.get()
    Delivery.objects.filter(pk=failed.pk).update(
        outcome="permanentFailure", provider_response="=HYPERLINK(1)"
    )
    client.force_login(marketer)
    listing = client.get(reverse(LIST), {"outcome": "permanentFailure"}).content.decode()
    assert 'href="export.csv?outcome=permanentFailure"' in listing  # the button keeps the filter
    response = client.get(reverse("admin:transactional_delivery_export"), {"outcome": "permanentFailure"})
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    (row,) = rows(response)
    assert row["PKey"] == safe_cell(failed.events.get().pkey) and row["event_id"] == "cartAbandonment"
    assert row["provider_response"] == "'=HYPERLINK(1)"  # never run as a formula by a spreadsheet
    everything = rows(client.get(reverse("admin:transactional_delivery_export")))
    assert {r["recipient"] for r in everything} == {"test@example.com"}
    assert len(everything) == 2  # not the other organization's


def test_an_export_with_an_unknown_filter_is_refused_in_one_line(client, marketer, sent):
    client.force_login(marketer)
    response = client.get(reverse("admin:transactional_delivery_export"), {"organization__slug": "acme"})
    assert response.status_code == 400 and not response.streaming


def test_looking_at_a_tracked_delivery_records_no_open_and_no_click(client, marketer, organization, settings):
    from messages.models import TrackingHit

    settings.PUBLIC_URL = "https://campaign.example.com"
    event = {**copy.deepcopy(CART_EVENT), "name": "linked"}
    event["message"]["html"] = (
        '<html><body><p>Hi</p><a href="https://shop.example.com/cart?a=1&amp;b=2">Cart</a></body></html>'
    )
    delivery = send(publish_events(organization, event)[0]).deliveries.get()
    assert "/t/o/" in delivery.content["html"] and "/t/c/" in delivery.content["html"]  # as it was sent
    client.force_login(marketer)
    html = client.get(reverse("admin:transactional_delivery_change", args=[delivery.pk])).content.decode()
    srcdoc = unescape(re.search(r'<iframe[^>]*srcdoc="([^"]*)"', html).group(1))
    assert "/t/o/" not in srcdoc and "/t/c/" not in srcdoc  # no pixel to load, no tracked link to follow
    assert '<a href="https://shop.example.com/cart?a=1&amp;b=2">Cart</a>' in srcdoc
    assert not TrackingHit.objects.exists()


def test_a_delivery_shows_its_provider_and_each_attempt(client, marketer, sent):
    sent.provider = "backup"
    sent.attempts = [
        {"provider": "primary", "outcome": "temporaryFailure", "response": "ConnectionRefusedError"},
        {"provider": "backup", "outcome": "sent", "response": "250 accepted"},
    ]
    sent.save()
    client.force_login(marketer)
    html = unescape(
        client.get(reverse("admin:transactional_delivery_change", args=[sent.pk])).content.decode()
    )
    assert "backup" in html and "primary" in html and "ConnectionRefusedError" in html
