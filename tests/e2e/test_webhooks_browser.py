"""The webhook endpoints' admin pages in a real browser (an administrator): adding an endpoint shows
its secret once; the delivery log shows the attempts and its Replay button sends a notification
again; a disabled endpoint is announced."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from events.models import WebhookAttempt, WebhookEndpoint, WebhookNotification
from tests.e2e import test_admin_browser
from tests.e2e.test_admin_browser import log_in

browser = test_admin_browser.browser
_roles_and_fast_hashing = test_admin_browser._roles_and_fast_hashing

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_administrator_adds_an_endpoint_and_replays_from_its_delivery_log(
    browser, live_server, administrator, organization, settings
):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True  # the URL below is on loopback
    page = log_in(browser, live_server, administrator, "/admin/events/webhookendpoint/add/")
    page.fill("#id_url", "http://127.0.0.1:9/hooks")
    page.check("#id_opens")
    page.click("input[name=_continue]")
    notice = page.locator(".messagelist .warning")
    expect(notice).to_contain_text("Signing secret: whsec_")
    secret = re.search(r"whsec_\S+", notice.inner_text()).group()
    page.reload()
    assert secret not in page.content()  # shown once

    endpoint = WebhookEndpoint.objects.get(organization=organization)
    assert endpoint.opens and endpoint.final_statuses
    notification = WebhookNotification.objects.create(
        endpoint=endpoint,
        kind="event.status",
        source_id=1,
        webhook_id="msg_browser",
        payload={"type": "event.status"},
        state="failed",
        attempts=3,
        next_attempt_at=timezone.now(),
    )
    WebhookAttempt.objects.create(
        notification=notification,
        endpoint=endpoint,
        started_at=timezone.now(),
        status_code=502,
        duration_ms=31,
    )
    page.click("a.delivery-log-link")
    row = page.locator("#delivery-log tbody tr").first
    expect(row).to_contain_text("msg_browser")
    expect(row).to_contain_text("502")
    expect(row).to_contain_text("31 ms")
    row.locator("button.replay").click()
    expect(page.locator(".messagelist .success")).to_contain_text("msg_browser will be sent again")
    notification.refresh_from_db()
    assert notification.state == "pending" and notification.webhook_id == "msg_browser"

    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        enabled=False, disabled_reason="Disabled after 50 failed attempts in a row (the last: HTTP 502)."
    )
    page.goto(f"{live_server.url}/admin/events/webhookendpoint/")
    expect(page.locator(".messagelist .error")).to_contain_text(
        "is disabled: Disabled after 50 failed attempts"
    )
