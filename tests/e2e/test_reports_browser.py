"""The reports in a real browser (Playwright driving Debian's chromium) after real sends through the
SMTP test server: the dashboard the admin opens on and a message's report, as a marketer and as an
administrator, their numbers checked against the database."""

from __future__ import annotations

import copy
import datetime as dt
import re
import urllib.error
import urllib.request

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from events import pipeline, rollups
from events.models import Event
from events.schema import validate_event
from events.services import ingest
from messages.models import Delivery, TrackingHit
from tests.conftest import CART_EVENT, publish_events, seed_body
from tests.e2e import test_admin_browser
from tests.e2e.test_admin_browser import SCREENSHOTS, log_in
from tests.messages.test_tracking import BROWSER, LINKS_EVENT

# The browser test's fixtures: a chromium, and the roles with fast password hashing.
browser = test_admin_browser.browser
_roles_and_fast_hashing = test_admin_browser._roles_and_fast_hashing

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
FUTURE = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.000Z")


def send(configuration, email: str) -> str | None:
    body = {**seed_body(scheduled=None, expiration=FUTURE), "email": email}
    event, _ = ingest(
        configuration=configuration, validated=validate_event(configuration.published_schema, body)
    )
    return pipeline.process(event.pk)


def pixel(html: str) -> str:
    (src,) = re.findall(r'<img src="([^"]+/t/o/[^"]+)"', html)
    return src


def links(html: str) -> list[str]:
    return re.findall(r'href="([^"]+/t/c/[^"]+)"', html)


def shown(page, name: str) -> int:
    return int(page.locator(f"#total-{name}").inner_text())


def expected(organization) -> dict[str, int]:
    """What the database holds, counted the slow way: the numbers the pages must show."""
    events = Event.objects.filter(organization=organization)
    deliveries = Delivery.objects.filter(organization=organization, is_proof=False)
    hits = TrackingHit.objects.filter(organization=organization)
    return {
        "received": events.count(),
        "processed": events.filter(status="processed").count(),
        "deliveryFailed": events.filter(status="deliveryFailed").count(),
        "sent": deliveries.count(),
        "delivered": deliveries.filter(outcome="sent").count(),
        "bounced_hard": deliveries.filter(outcome="permanentFailure").count(),
        "opened": hits.filter(kind="open").count(),
        "opened_unique": hits.filter(kind="open", first=True).count(),
        "clicked": hits.filter(kind="click").count(),
        "clicked_unique": hits.filter(kind="click", first=True).count(),
    }


def hit(url: str, user_agent: str = BROWSER) -> int:
    """An open or a click as a mail client makes it: a plain HTTP GET (redirects not followed)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(
            urllib.request.Request(url, headers={"User-Agent": user_agent}), timeout=10
        ) as answer:
            return answer.status
    except urllib.error.HTTPError as answer:
        return answer.code


def test_dashboard_and_message_report_show_the_databases_numbers_to_both_roles(
    browser, live_server, marketer, administrator, organization, other_organization, smtp_email, settings
):
    settings.PUBLIC_URL = live_server.url  # the tracking links point at this server
    configuration = publish_events(organization, copy.deepcopy(LINKS_EVENT))[0]
    for address in ("ann@example.com", "bob@example.com", "cid@example.com", "reject-me@example.com"):
        send(configuration, address)
    received = smtp_email.wait_for(3)
    assert len(received) == 3
    # Past the first second after the send, when an open is taken for a scanner's.
    Delivery.objects.update(created_at=timezone.now() - dt.timedelta(minutes=5))
    ann, bob = received[0].part("text/html"), received[1].part("text/html")
    assert hit(pixel(ann)) == hit(pixel(ann)) == hit(pixel(bob)) == 200
    assert hit(links(ann)[0]) == hit(links(ann)[1]) == hit(links(bob)[0]) == 302
    assert hit(links(bob)[1], user_agent="python-requests/2.32") == 302  # a scanner: never unique
    assert hit(links(ann)[0][:-4] + "AAAA") == 404  # a forged link
    theirs = publish_events(other_organization, copy.deepcopy(CART_EVENT))[0]
    send(theirs, "someone@example.com")  # another organization's: never on these pages
    rollups.refresh()  # what the beat does every minute
    want = expected(organization)
    assert want == {
        "received": 4,
        "processed": 3,
        "deliveryFailed": 1,
        "sent": 4,
        "delivered": 3,
        "bounced_hard": 1,
        "opened": 3,
        "opened_unique": 2,
        "clicked": 4,
        "clicked_unique": 2,
    }

    for user in (marketer, administrator):
        page = log_in(browser, live_server, user, "/admin/")
        for name, count in want.items():
            assert shown(page, name) == count, name
        assert page.locator("#report-reasons").inner_text().count("550") >= 1
        assert page.locator(".report-chart svg").count() == 3
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)
        assert page.locator(".report-chart").nth(2).inner_text().count("clicked (4)") == 1
        row = page.locator("#report-messages tr", has_text=configuration.event_id)
        assert row.count() == 1  # only this organization's event type
        row.get_by_role("link", name="Report").click()
        page.wait_for_url(f"**/admin/reports/messages/{configuration.message.pk}/")
        for name, count in want.items():
            assert shown(page, name) == count, name
        page.locator("#report-versions").get_by_role("link", name="v1").click()
        assert shown(page, "delivered") == want["delivered"]
        hot = page.locator("#hot-clicks tbody tr")
        expect(hot.first).to_contain_text("https://shop.example.com/cart?item=1&ref=mail")
        assert hot.first.locator("td").all_inner_texts()[1:] == ["2", "2"]
        expect(hot.nth(1)).to_contain_text("https://shop.example.com/help")
        assert hot.nth(1).locator("td").all_inner_texts()[1:] == ["2", "1"]  # one was a scanner's
        # The 30 days, charted by day.
        page.select_option("#id_period", "30d")
        page.click("#report-period input[type=submit]")
        assert shown(page, "received") == want["received"]
        assert page.locator("#report-series tbody tr").count() == 30

    # The message's page has the Report button.
    page.goto(
        f"{live_server.url}/admin/transactional/transactionalmessage/{configuration.message.pk}/change/"
    )
    page.click("#report-link")
    assert shown(page, "received") == want["received"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "message-report.png"), full_page=True)
