"""The reports in a real browser (Playwright driving Debian's chromium) after real sends through the
SMTP test server: the dashboard the admin opens on and a message's report, as a marketer and as an
administrator, their numbers checked against the database."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from django.utils import timezone

from events import pipeline, rollups
from events.models import Event
from events.schema import validate_event
from events.services import ingest
from messages.models import Delivery
from tests.conftest import CART_EVENT, publish_events, seed_body
from tests.e2e import test_admin_browser
from tests.e2e.test_admin_browser import SCREENSHOTS, log_in

# The browser test's fixtures: a chromium, and the roles with fast password hashing.
browser = test_admin_browser.browser
_roles_and_fast_hashing = test_admin_browser._roles_and_fast_hashing

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
FUTURE = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.000Z")


def send(configuration, email: str) -> str:
    body = {**seed_body(scheduled=None, expiration=FUTURE), "email": email}
    event, _ = ingest(
        configuration=configuration, validated=validate_event(configuration.published_schema, body)
    )
    return pipeline.process(event.pk)


def shown(page, name: str) -> int:
    return int(page.locator(f"#total-{name}").inner_text())


def expected(organization) -> dict[str, int]:
    """What the database holds, counted the slow way: the numbers the pages must show."""
    events = Event.objects.filter(organization=organization)
    deliveries = Delivery.objects.filter(organization=organization, is_proof=False)
    return {
        "received": events.count(),
        "processed": events.filter(status="processed").count(),
        "deliveryFailed": events.filter(status="deliveryFailed").count(),
        "sent": deliveries.count(),
        "delivered": deliveries.filter(outcome="sent").count(),
        "bounced_hard": deliveries.filter(outcome="permanentFailure").count(),
    }


def test_dashboard_and_message_report_show_the_databases_numbers_to_both_roles(
    browser, live_server, marketer, administrator, organization, other_organization, smtp_email
):
    configuration = publish_events(organization, copy.deepcopy(CART_EVENT))[0]
    for address in ("ann@example.com", "bob@example.com", "cid@example.com", "reject-me@example.com"):
        send(configuration, address)
    assert len(smtp_email.wait_for(3)) == 3
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
    }

    for user in (marketer, administrator):
        page = log_in(browser, live_server, user, "/admin/")
        for name, count in want.items():
            assert shown(page, name) == count, name
        assert page.locator("#report-reasons").inner_text().count("550") >= 1
        assert page.locator(".report-chart svg").count() == 3
        row = page.locator("#report-messages tr", has_text="EVTcartAbandonment")
        assert row.count() == 1  # only this organization's event type
        row.get_by_role("link", name="Report").click()
        page.wait_for_url(f"**/admin/reports/messages/{configuration.message.pk}/")
        for name, count in want.items():
            assert shown(page, name) == count, name
        page.locator("#report-versions").get_by_role("link", name="v1").click()
        assert shown(page, "delivered") == want["delivered"]
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
