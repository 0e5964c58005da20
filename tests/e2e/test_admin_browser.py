"""The admin in a real browser (Playwright driving Debian's chromium) against a live server: an
administrator defines and publishes an event type and reads its API preview; a marketer then edits
and publishes its message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.db import connections

from campaign.roles import ROLE_NAMES, sync_roles
from messages.models import TransactionalMessage
from tests.tools import missing_tool

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    missing_tool(
        f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) for the browser tests",
        module_level=True,
    )

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery"  # tests.factories.UserFactory's
SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(autouse=True)
def _roles_and_fast_hashing(transactional_db, settings, monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the ORM calls of the test are still sync.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # A transactional test flushes the tables, and with them the roles the data migration made.
    if Group.objects.filter(name__in=ROLE_NAMES).count() != len(ROLE_NAMES):
        sync_roles(Group, Permission)


@pytest.fixture
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()
        # While Playwright's loop runs, Django takes this thread for an async context and gives the
        # test's ORM calls their own connection: close it, or PostgreSQL cannot drop the test database.
        connections.close_all()


def log_in(browser, live_server, user, next_path: str) -> Page:
    """A fresh browser session (its own cookies) of `user`, landed on `next_path`."""
    page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{live_server.url}/admin/login/?next={next_path}")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}{next_path}")
    return page


def test_administrator_publishes_an_event_and_a_marketer_publishes_its_message(
    browser, live_server, administrator, marketer
):
    # The administrator defines EVTorderShipped with two fields and presses "Save and publish".
    page = log_in(browser, live_server, administrator, "/admin/events/eventconfiguration/add/")
    page.fill("#id_name", "EVTorderShipped")
    page.fill("#id_label", "Order shipped")
    page.fill("#id_fields-0-name", "orderId")
    page.click("#fields-group .add-row a")  # the inline's "Add another" row, added by the admin's JS
    page.fill("#id_fields-1-name", "trackingUrl")
    page.select_option("#id_fields-1-type", "url")
    page.click("input[name=_publish]")

    expect(page.locator(".messagelist")).to_contain_text("EVTorderShipped published: its endpoint answers.")
    endpoint = f"{live_server.url}/geometrixx/campaign/mcgeometrixx/EVTorderShipped"
    expect(page.locator(".field-endpoint")).to_contain_text(f"POST {endpoint}")
    curl = page.locator("#api-preview-curl").inner_text()
    assert curl.startswith(f"curl -X POST '{endpoint}'")
    assert '"orderId"' in curl and '"trackingUrl"' in curl
    assert "X-Api-Key: <API_KEY>" in curl

    # The marketer opens the message from the list, changes the subject and publishes it.
    page = log_in(browser, live_server, marketer, "/admin/transactional/transactionalmessage/")
    page.get_by_role("link", name="EVTorderShipped").click()
    expect(page.locator(".field-status")).to_contain_text("Draft")
    page.fill("#id_subject", "Your order {{ ctx.orderId }} is on its way")
    page.click("input[name=_publish]")

    expect(page.locator(".messagelist")).to_contain_text("The message of EVTorderShipped is published.")
    expect(page.locator(".field-status")).to_contain_text("Published")
    expect(page.locator("#pause-link")).to_be_visible()
    expect(page.locator(".field-preview")).to_contain_text(
        re.compile(r"Subject: Your order [^{]+ is on its way")
    )
    html_preview = page.frame_locator(".field-preview iframe").locator("body")
    expect(html_preview).to_contain_text("orderId:")
    expect(html_preview).not_to_contain_text("{{")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # A tall viewport rather than full_page: full-page captures leave the sandboxed preview iframe blank.
    page.set_viewport_size({"width": 1280, "height": 2100})
    page.screenshot(path=str(SCREENSHOTS / "marketer-published-message.png"))

    message = TransactionalMessage.objects.get(configuration__name="orderShipped")
    assert message.status == "published"
    assert message.live_version.content["subject"] == "Your order {{ ctx.orderId }} is on its way"
    assert message.live_version.published_by == marketer


def test_marketer_writes_a_product_loop_previews_proofs_and_publishes_without_leaking_drafts(
    browser, live_server, marketer, organization, smtp_email
):
    import copy
    import datetime as dt

    from django.utils import timezone

    from events import pipeline
    from events.schema import validate_event
    from events.services import ingest
    from tests.conftest import CART_EVENT, SEED_BODY, publish_events
    from tests.factories import ProfileFactory

    configuration = publish_events(organization, copy.deepcopy(CART_EVENT))[0]
    ProfileFactory(organization=organization, email="qa@example.com", is_test=True)
    ProfileFactory(organization=organization, email="customer@example.com")  # not a test profile
    message_url = f"/admin/transactional/transactionalmessage/{configuration.message.pk}/change/"
    page = log_in(browser, live_server, marketer, message_url)
    page.fill("#id_subject", "{{ ctx.firstName }}, {{ ctx.products | length }} items wait for you")
    page.fill(
        "#id_html",
        "<p>Hi {{ ctx.firstName }}</p><ul>{% for p in ctx.products %}"
        "<li class='product'>{{ p.sku }} at {{ p.price | currency('EUR') }}</li>{% endfor %}</ul>",
    )
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist")).to_contain_text("changed successfully")

    # The preview page, with sample data the marketer edits.
    page.click("text=Preview")
    page.fill(
        "#id_ctx",
        '{"firstName": "Jack", "products": [{"sku": "JACKET-1", "price": 125}, '
        '{"sku": "GLOVES-2", "price": 30.5}]}',
    )
    page.click("input[name=_preview]")
    expect(page.locator("#preview-subject")).to_have_text("Jack, 2 items wait for you")
    frame = page.frame_locator("#preview-html").locator("body")
    expect(frame).to_contain_text("JACKET-1 at €125.00")
    expect(frame).to_contain_text("GLOVES-2 at €30.50")

    # A proof to a test profile (the only profiles the page offers), through a real SMTP server.
    page.goto(f"{live_server.url}{message_url.replace('change/', 'proof/')}")
    expect(page.locator("#id_profiles option")).to_have_text(["qa@example.com"])
    page.select_option("#id_profiles", label="qa@example.com")
    page.click("input[name=_send]")
    expect(page.locator(".messagelist")).to_contain_text("Proof to qa@example.com: sent")
    (proof,) = smtp_email.wait_for(1)
    assert proof.subject.startswith("[Proof] ") and "items wait for you" in proof.subject

    # Publish; the next event sends the new version.
    page.goto(f"{live_server.url}{message_url}")
    page.click("input[name=_publish]")
    expect(page.locator(".messagelist")).to_contain_text("is published")
    body = {
        **copy.deepcopy(SEED_BODY),
        "scheduled": None,
        "expiration": (timezone.now() + dt.timedelta(days=1)).isoformat(),
        "ctx": {"firstName": "Jack", "products": [{"sku": "JACKET-1", "price": 125}]},
    }

    def send_event() -> str:
        already = len(smtp_email.messages)
        event, _ = ingest(
            configuration=configuration, validated=validate_event(configuration.published_schema, body)
        )
        assert pipeline.process(event.pk) == "processed"
        received = smtp_email.wait_for(already + 1)
        assert len(received) == already + 1
        return received[-1].subject

    assert send_event() == "Jack, 1 items wait for you"

    # A new draft, saved but not published, never leaks into what events send.
    page.fill("#id_subject", "DRAFT {{ ctx.firstName }}")
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist")).to_contain_text("changed successfully")
    assert send_event() == "Jack, 1 items wait for you"
    assert not any(m.subject.startswith("DRAFT") for m in smtp_email.messages)


def test_the_content_security_policy_lets_the_admin_the_preview_and_swagger_ui_work(
    browser, live_server, marketer, organization
):
    import copy

    from tests.conftest import CART_EVENT, publish_events

    configuration = publish_events(organization, copy.deepcopy(CART_EVENT))[0]
    message_url = f"/admin/transactional/transactionalmessage/{configuration.message.pk}/change/"
    page = log_in(browser, live_server, marketer, message_url)
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)

    response = page.goto(f"{live_server.url}{message_url}")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.frame_locator(".field-preview iframe").locator("body")).to_contain_text("Hello")
    page.click("text=Preview")
    page.click("input[name=_preview]")
    expect(page.frame_locator("#preview-html").locator("body")).to_contain_text("Hello")
    page.goto(f"{live_server.url}/api/docs/")
    expect(page.locator(".opblock-summary").first).to_be_visible()  # Swagger UI started: its script ran
    expect(page.get_by_text("/ims/token/v3")).to_be_visible()
    assert violations == []

    # The policy is enforced: an inline script is refused, and the refusal is seen.
    with page.expect_console_message(lambda m: "Content Security Policy" in m.text) as refusal:
        page.evaluate(
            "() => { const s = document.createElement('script'); s.textContent = 'window.x = 1';"
            " document.body.appendChild(s); }"
        )
    assert "inline script" in refusal.value.text
    assert page.evaluate("() => window.x") is None
