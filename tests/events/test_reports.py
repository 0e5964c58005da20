"""Reports: built from the rollups over a period, shown on the admin index (the dashboard) and on a
message's report page, each scoped to the caller's organization."""

from __future__ import annotations

import copy
import datetime as dt
import re
import zoneinfo
from html import unescape

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from events import pipeline, reports, rollups
from events.models import Event, HourlyRollup
from events.schema import validate_event
from events.services import ingest
from messages.models import Delivery
from tests.conftest import CART_EVENT, publish_events, seed_body

pytestmark = pytest.mark.django_db
FUTURE = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.000Z")
UTC = zoneinfo.ZoneInfo("UTC")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def send(configuration, email: str) -> Event:
    body = {**seed_body(scheduled=None, expiration=FUTURE), "email": email}
    event, _ = ingest(
        configuration=configuration, validated=validate_event(configuration.published_schema, body)
    )
    pipeline.process(event.pk)
    return event


def number(html: str, name: str) -> int:
    found = re.search(rf'id="total-{name}">(\d+)<', html)
    assert found, f"no total-{name} on the page"
    return int(found.group(1))


def period(choice: str = "7d", **more) -> reports.Period:
    form = reports.PeriodForm({"period": choice, **more})
    assert form.is_valid(), form.errors
    return form.period_in(UTC)


def test_a_report_over_a_period_adds_up_the_hours_in_it(cart_configuration, smtp_email):
    for address in ("a@example.com", "b@example.com", "reject-me@example.com"):
        send(cart_configuration, address)
    old = send(cart_configuration, "old@example.com")
    ten_days_ago = timezone.now() - dt.timedelta(days=10)
    Event.objects.filter(pk=old.pk).update(created_at=ten_days_ago, updated_at=ten_days_ago)
    rollups.refresh()

    week = reports.build(HourlyRollup.objects.all(), period("7d"))
    assert (week.totals["received"], week.totals["delivered"], week.totals["bounced_hard"]) == (3, 2, 1)
    assert week.totals["delivery_failed"] == 1 and week.reasons["deliveryFailed"][0][1] == 1
    assert len(week.series) == 7 * 24 and sum(p["received"] for _, p in week.series) == 3
    assert week.latency["p50"] is not None

    month = reports.build(HourlyRollup.objects.all(), period("30d"))
    assert month.totals["received"] == 4 and month.period.by_day and len(month.series) == 30
    today = timezone.now().date()
    custom = period("custom", start=today - dt.timedelta(days=10), end=today - dt.timedelta(days=10))
    assert reports.build(HourlyRollup.objects.all(), custom).totals["received"] == 1


def test_a_30_day_report_reads_one_query_of_rollup_rows_whatever_the_history(cart_configuration, smtp_email):
    send(cart_configuration, "a@example.com")
    rollups.refresh()
    with CaptureQueriesContext(connection) as queries:
        month = reports.build(HourlyRollup.objects.all(), period("30d"))
    assert len(queries.captured_queries) == 1 and "events_event" not in queries.captured_queries[0]["sql"]
    assert month.rows_read == 1


def test_latency_percentiles_are_interpolated_within_the_histograms_buckets():
    buckets = [0] * (len(reports.LATENCY_BUCKETS) + 1)
    assert reports.quantile(buckets, 0.5) is None
    buckets[0] = 100  # all under 50 ms
    assert reports.quantile(buckets, 0.5) == pytest.approx(0.025)
    buckets[-1] = 100  # as many past the last bound
    assert reports.quantile(buckets, 0.99) == reports.LATENCY_BUCKETS[-1]


def test_a_custom_period_needs_both_days_in_order_and_is_bounded():
    assert "start" in reports.PeriodForm({"period": "custom", "end": "2026-01-01"}).errors
    assert (
        "end" in reports.PeriodForm({"period": "custom", "start": "2026-01-02", "end": "2026-01-01"}).errors
    )
    assert (
        "end" in reports.PeriodForm({"period": "custom", "start": "2020-01-01", "end": "2026-01-01"}).errors
    )
    assert "period" in reports.PeriodForm({"period": "forever"}).errors


def test_the_admin_index_opens_on_the_organizations_dashboard(
    client, marketer, administrator, cart_configuration, other_organization, smtp_email
):
    send(cart_configuration, "a@example.com")
    send(cart_configuration, "reject-me@example.com")
    theirs = publish_events(other_organization, copy.deepcopy(CART_EVENT))[0]
    send(theirs, "b@example.com")
    rollups.refresh()
    for user in (marketer, administrator):
        client.force_login(user)
        page = client.get(reverse("admin:index")).content.decode()
        assert number(page, "received") == 2  # not the other organization's event
        assert (
            number(page, "delivered")
            == Delivery.objects.filter(organization=cart_configuration.organization, outcome="sent").count()
            == 1
        )
        assert number(page, "bounced_hard") == 1
        assert "EVTcartAbandonment" in page
        assert reverse("message-report", args=[cart_configuration.message.pk]) in unescape(page)
        assert "<svg" in page and 'id="report-series"' in page


def test_a_superuser_sees_every_organization_or_picks_one(
    client, cart_configuration, other_organization, smtp_email
):
    send(cart_configuration, "a@example.com")
    send(publish_events(other_organization, copy.deepcopy(CART_EVENT))[0], "b@example.com")
    rollups.refresh()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "x"))
    assert number(client.get(reverse("admin:index")).content.decode(), "received") == 2
    picked = client.get(reverse("admin:index"), {"organization": "acme"}).content.decode()
    assert number(picked, "received") == 1


def test_a_wrong_period_is_a_form_error_on_the_dashboard(client, marketer):
    client.force_login(marketer)
    page = client.get(reverse("admin:index"), {"period": "custom", "start": "2026-02-01"})
    assert page.status_code == 200
    assert "Choose the last day of the period." in page.content.decode()


def test_a_messages_report_per_version_from_its_change_page(client, marketer, cart_configuration, smtp_email):
    message = cart_configuration.message
    send(cart_configuration, "a@example.com")
    rollups.refresh()
    client.force_login(marketer)
    change = client.get(reverse("admin:transactional_transactionalmessage_change", args=[message.pk]))
    url = reverse("message-report", args=[message.pk])
    assert f'href="{url}"' in change.content.decode()

    page = client.get(url).content.decode()
    assert number(page, "received") == 1 and number(page, "delivered") == 1
    assert 'id="report-by-version"' in page and "?version=1" in page
    assert "No click recorded in this period." in page
    one = client.get(url, {"version": "1"}).content.decode()
    assert number(one, "delivered") == 1
    assert client.get(url, {"version": "99"}).status_code == 404


def test_another_organizations_message_report_is_not_found(client, marketer, other_organization):
    theirs = publish_events(other_organization, copy.deepcopy(CART_EVENT))[0]
    client.force_login(marketer)
    assert client.get(reverse("message-report", args=[theirs.message.pk])).status_code == 404


def test_the_report_needs_a_staff_login(client, cart_configuration):
    page = client.get(reverse("message-report", args=[cart_configuration.message.pk]))
    assert page.status_code == 302 and "/admin/login/" in page["Location"]


def test_opens_and_clicks_made_by_http_requests_reach_the_report_and_its_hot_clicks(
    client, marketer, organization, smtp_email, settings
):
    from tests.messages.test_tracking import (
        BROWSER,
        LINKS_EVENT,
        PUBLIC,
        pixel_of,
        send_one,
        sent_a_while_ago,
        tracked_links,
    )

    settings.PUBLIC_URL = PUBLIC + "/"
    configuration = publish_events(organization, copy.deepcopy(LINKS_EVENT))[0]
    first, html = send_one(configuration, smtp_email)
    second, other_html = send_one(configuration, smtp_email, email="joe@example.com")
    sent_a_while_ago(first)
    sent_a_while_ago(second)
    reader = {"HTTP_USER_AGENT": BROWSER}
    cart, help_link = tracked_links(html)[:2]  # (a third link repeats the first URL)
    for url in (pixel_of(html), pixel_of(html), cart, cart, help_link, pixel_of(other_html)):
        assert client.get(url, **reader).status_code in (200, 302)
    assert client.get(tracked_links(other_html)[0], HTTP_USER_AGENT="python-requests/2.32").status_code == 302
    rollups.refresh()

    from messages.models import TrackingHit

    hits = TrackingHit.objects.all()
    version = configuration.message.live_version
    row = HourlyRollup.objects.get(version=version)
    assert (row.opened, row.opened_unique) == (hits.filter(kind="open").count(), 2) == (3, 2)
    assert (row.clicked, row.clicked_unique) == (hits.filter(kind="click").count(), 1) == (4, 1)

    client.force_login(marketer)
    page = client.get(reverse("message-report", args=[configuration.message.pk])).content.decode()
    assert (number(page, "opened"), number(page, "opened_unique")) == (3, 2)
    assert (number(page, "clicked"), number(page, "clicked_unique")) == (4, 1)
    hot = re.findall(r"<tr><td>(https://shop\.example\.com/[^<]*)</td><td>(\d+)</td><td>(\d+)</td>", page)
    assert [(unescape(url), int(c), int(u)) for url, c, u in hot] == [
        ("https://shop.example.com/cart?item=1&ref=mail", 3, 1),
        ("https://shop.example.com/help", 1, 1),
    ]


def test_a_report_is_in_the_organizations_own_time_zone(organization):
    from events import reports

    organization.time_zone = "Pacific/Auckland"
    organization.full_clean()
    zone = reports.time_zone_of(organization)
    form = reports.PeriodForm(data={"period": "7d"})
    assert form.is_valid()
    period = form.period_in(zone)
    local_start = period.start.astimezone(zone)
    assert (local_start.hour, local_start.minute) == (0, 0) and str(zone) == "Pacific/Auckland"
    assert str(reports.time_zone_of(None)) == settings.TIME_ZONE


def test_an_unknown_time_zone_is_refused(organization):
    from django.core.exceptions import ValidationError

    organization.time_zone = "Mars/Olympus_Mons"
    with pytest.raises(ValidationError, match="not a time zone name"):
        organization.full_clean()
