"""A draft tried on real traffic in a real browser, as the marketer (issue 17, part 3): the try is
stored pending and the page follows it (a static script polls) until a worker has filled it; then
it shows, side by side, that the draft cannot render an event the live version renders. Nothing
is sent. A failing test leaves screenshots of its pages in var/screenshots."""

from __future__ import annotations

import copy

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from events.models import Event
from messages import draft_try
from messages.models import Delivery, DraftTry
from tests.conftest import CART_EVENT, publish_events
from tests.e2e import test_admin_browser, test_admin_pages_browser
from tests.e2e.test_admin_browser import log_in
from tests.e2e.test_admin_pages_browser import message_url, opened
from tests.e2e.test_message_editor_browser import watch_policy

browser = test_admin_browser.browser
_roles_and_fast_hashing = test_admin_browser._roles_and_fast_hashing
pages = test_admin_pages_browser.pages

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The live version prints only the first name; the draft also prints the last product.
GREETING = {
    **copy.deepcopy(CART_EVENT),
    "message": {
        "subject": "Hello {{ ctx.firstName }}",
        "html": "<p>Hello {{ ctx.firstName }}</p>",
        "text": "Hello {{ ctx.firstName }}",
    },
}


def test_the_try_shows_an_event_the_draft_cannot_render_while_the_live_version_renders_all(
    browser, live_server, marketer, organization, pages, monkeypatch
):
    configuration = publish_events(organization, copy.deepcopy(GREETING))[0]
    for pkey, ctx in [
        ("with-product", {"firstName": "Ann", "lastProduct": "Jacket"}),
        ("without-product", {"firstName": "Bob"}),
    ]:
        Event.objects.create(
            organization_id=organization.pk,
            configuration=configuration,
            pkey=pkey,
            email="jack@example.com",
            ctx=ctx,
            next_attempt_at=timezone.now(),
        )
    handed_to_worker: list[int] = []
    monkeypatch.setattr(draft_try, "enqueue", handed_to_worker.append)  # no worker yet

    page = opened(pages, log_in(browser, live_server, marketer, message_url(configuration)))
    violations = watch_policy(page)
    page.fill("#id_subject", "Hello {{ ctx.firstName }}, still want {{ ctx.lastProduct }}?")
    with page.expect_navigation():
        page.click("input[name=_continue]")
    page.click("#try-link")
    page.locator("#draft-try-form").evaluate("form => { form.noValidate = true; }")  # the server's bound
    page.fill("#id_size", "500")
    page.click("input[name=_try]")
    expect(page.locator(".errorlist")).to_contain_text("less than or equal to 200")
    assert not DraftTry.objects.exists()

    page.fill("#id_size", "20")
    page.click("input[name=_try]")
    tried = page.locator("#draft-try")
    expect(tried).to_have_attribute("data-state", "pending")
    expect(page.locator("#draft-try-progress")).to_contain_text("Trying")

    # The worker fills the try: the page, polling, shows it without a click.
    (try_id,) = handed_to_worker
    draft_try.run(try_id)
    expect(tried).to_have_attribute("data-state", "done")
    expect(page.locator("#draft-try-events")).to_contain_text("2 events found, 2 tried")
    expect(page.locator(".try-rendered[data-side=draft]")).to_have_text("1 of 2")
    expect(page.locator(".try-rendered[data-side=live]")).to_have_text("2 of 2")
    expect(page.locator(".try-failed[data-side=draft]")).to_contain_text("Missing field: 1")
    failing = page.locator("#draft-try-failures tr[data-pkey=without-product]")
    expect(failing.locator("td").nth(1)).to_contain_text("Missing field")
    expect(failing.locator("td").nth(1)).to_contain_text("lastProduct")
    expect(failing.locator("td").nth(2)).to_contain_text("Renders")
    expect(page.locator(".draft-try-side[data-side=draft]")).to_contain_text("still want Jacket?")
    expect(page.locator(".draft-try-side[data-side=live]")).to_contain_text("Hello Bob")
    assert violations == []
    assert not Delivery.objects.exists()
    assert set(Event.objects.values_list("status", flat=True)) == {"pending"}
