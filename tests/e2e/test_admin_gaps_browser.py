"""What a marketer or administrator expects of the admin beyond its defects (issue 15's gaps), in a
real browser as the role that uses each: an event's sends, its profile and sending a failed event
again. A failing test leaves screenshots of its pages in var/screenshots."""

from __future__ import annotations

import copy

import pytest
from playwright.sync_api import expect

from events.models import Event
from tests.conftest import CART_EVENT, publish_events
from tests.e2e import test_admin_browser, test_admin_pages_browser
from tests.e2e.test_admin_browser import log_in
from tests.e2e.test_admin_pages_browser import opened, queue_events

browser = test_admin_browser.browser
_roles_and_fast_hashing = test_admin_browser._roles_and_fast_hashing
pages = test_admin_pages_browser.pages

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WELCOME = {
    "name": "welcome",
    "label": "Welcome",
    "channel": "email",
    "targeting": "profile",
    "fields": [{"name": "email", "type": "email"}, {"name": "plan", "type": "text"}],
    "reconciliation": {"eventField": "email", "profileField": "email"},
    "message": {"subject": "Welcome {{ ctx.plan }}", "html": "<p>Plan {{ ctx.plan }}</p>", "text": ""},
}


def test_administrator_follows_an_event_to_its_delivery_and_profile_and_sends_a_failed_one_again(
    browser, live_server, administrator, organization, pages, settings
):
    from events import pipeline
    from events.schema import validate_event
    from events.services import ingest
    from tests.factories import ProfileFactory

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    cart, welcome = publish_events(organization, copy.deepcopy(CART_EVENT), copy.deepcopy(WELCOME))
    ProfileFactory(organization=organization, email="jane@example.com")
    body = {"ctx": {"email": "jane@example.com", "plan": "gold"}}
    sent, _ = ingest(configuration=welcome, validated=validate_event(welcome.published_schema, body))
    assert pipeline.process(sent.pk) == "processed"
    queue_events(cart, 1)
    failed = Event.objects.get(configuration=cart)
    Event.objects.filter(pk=failed.pk).update(status="deliveryFailed", last_error="550 mailbox full")

    # The welcome event's page: the profile it went to, and its delivery, one click each.
    event_url = f"/admin/events/event/{sent.pk}/change/"
    page = opened(pages, log_in(browser, live_server, administrator, event_url))
    page.click("#recipient-profile")
    expect(page.locator("#id_email")).to_have_value("jane@example.com")
    page.go_back()
    page.click(".delivery-link")
    expect(page.locator("#content")).to_contain_text("jane@example.com")
    expect(page.locator(".breadcrumbs")).to_contain_text("Deliveries")

    # Both events selected for "Send again": the failed one is, the processed one is refused.
    page.goto(f"{live_server.url}/admin/events/event/")
    page.check("#action-toggle")
    page.select_option("select[name=action]", "send_again")
    page.click("button[name=index]")
    messages = page.locator(".messagelist")
    expect(messages).to_contain_text(f"Event {failed.pkey} sent again as")
    expect(messages).to_contain_text(f"Event {sent.pkey} is processed: only an event that ended")
    again = Event.objects.get(sent_again_from=failed)

    # The new event links to the original and back; the original keeps its one final status.
    messages.locator("a").click()
    expect(page.locator(".field-pkey .readonly")).to_have_text(again.pkey)
    expect(page.locator(".field-sent_again")).to_contain_text(f"As a new send of {failed.pkey}")
    page.click(".sent-again-link")
    expect(page.locator(".field-pkey .readonly")).to_have_text(failed.pkey)
    expect(page.locator(".field-status .readonly")).to_have_text("Delivery failed")
    expect(page.locator(".field-sent_again")).to_contain_text(f"As {again.pkey} (pending)")

    # From the failed event's own page, once more; a pending event's page offers no such button.
    page.click("#send-again")
    expect(page.locator(".messagelist")).to_contain_text(f"Event {failed.pkey} sent again as")
    assert Event.objects.filter(sent_again_from=failed).count() == 2
    page.goto(f"{live_server.url}/admin/events/event/{again.pk}/change/")
    expect(page.locator(".field-pkey .readonly")).to_have_text(again.pkey)
    expect(page.locator("#send-again")).to_have_count(0)


def test_marketer_reads_each_messages_label_live_version_sends_and_unpublished_changes_in_the_list(
    browser, live_server, marketer, organization, pages, settings
):
    from django.utils import timezone

    from events import pipeline, rollups
    from messages import services

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    cart, welcome = publish_events(organization, copy.deepcopy(CART_EVENT), copy.deepcopy(WELCOME))
    queue_events(cart, 2)
    for event in Event.objects.all():
        assert pipeline.process(event.pk) == "processed"
    rollups.refresh(now=timezone.now())
    message = cart.message
    message.subject = "Still thinking about it, {{ ctx.firstName }}?"
    services.save_draft(message=message)

    page = opened(pages, log_in(browser, live_server, marketer, "/admin/transactional/transactionalmessage/"))
    page.set_viewport_size({"width": 1400, "height": 900})
    cart_row = page.locator("#result_list tbody tr", has_text="EVTcartAbandonment")
    expect(cart_row.locator(".field-event_label")).to_have_text("Cart abandonment")
    expect(cart_row.locator(".field-channel")).to_have_text("Email")
    expect(cart_row.locator(".field-live")).to_have_text("v1")
    expect(cart_row.locator(".field-sends_of_last_day")).to_have_text("2")
    mark = cart_row.locator(".draft-changed")
    expect(mark).to_have_text("Unpublished changes")
    expect(mark).to_be_visible()
    welcome_row = page.locator("#result_list tbody tr", has_text="EVTwelcome")
    expect(welcome_row.locator(".field-sends_of_last_day")).to_have_text("0")
    expect(welcome_row.locator(".field-changes")).to_have_text("Same as the live version")

    # The count leads to the message's report.
    cart_row.locator(".sends-link").click()
    expect(page.locator("h1")).to_contain_text("Report: EVTcartAbandonment")


def test_administrator_defines_an_event_type_with_listed_values_and_positions_copies_curl_duplicates(
    browser, live_server, administrator, organization, pages
):
    from events.models import EventConfiguration

    page = opened(pages, log_in(browser, live_server, administrator, "/admin/events/eventconfiguration/add/"))
    # The reconciliation is for profile targeting only: hidden for a real-time event, shown for profiles.
    reconciliation = page.locator("fieldset.reconciliation")
    expect(reconciliation).to_be_hidden()
    page.select_option("#id_targeting", "profile")
    expect(reconciliation).to_be_visible()
    page.select_option("#id_targeting", "event")
    expect(reconciliation).to_be_hidden()

    # Fields: allowed values typed as a list; positions left empty follow one another.
    page.fill("#id_name", "EVTorderShipped")
    page.fill("#id_label", "Order shipped")
    expect(page.locator("#id_fields-0-position")).to_have_value("")
    page.fill("#id_fields-0-name", "orderId")
    page.click("#fields-group .add-row a")
    page.fill("#id_fields-1-name", "tier")
    page.fill("#id_fields-1-values", "gold, silver")
    page.click("#fields-group .add-row a")
    page.fill("#id_fields-2-name", "size")
    page.select_option("#id_fields-2-type", "integer")
    page.fill("#id_fields-2-values", "38, 40")
    page.click("input[name=_publish]")
    expect(page.locator(".messagelist")).to_contain_text("EVTorderShipped published: its endpoint answers.")
    configuration = EventConfiguration.objects.get(name="orderShipped")
    assert [(f.name, f.position, f.values) for f in configuration.fields.order_by("position")] == [
        ("orderId", 0, []), ("tier", 1, ["gold", "silver"]), ("size", 2, [38, 40]),
    ]  # fmt: skip
    expect(page.locator("#id_fields-1-values")).to_have_value("gold, silver")
    expect(page.locator("#id_fields-2-values")).to_have_value("38, 40")
    expect(page.locator("fieldset.reconciliation")).to_have_count(0)  # an event-based event type

    # The API preview: its curl copied in one click, and the event's own Swagger UI page.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.click("#copy-curl")
    expect(page.locator("#copy-curl")).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == page.locator("#api-preview-curl").inner_text()
    assert copied.startswith("curl -X POST") and '"tier": "gold"' in copied
    with page.context.expect_page() as opening:
        page.click("#swagger-link")
    swagger = opened(pages, opening.value)
    operation = swagger.locator("#operations-EVTorderShipped-send_EVTorderShipped")
    expect(operation).to_be_visible(timeout=20_000)
    expect(operation.locator(".opblock-body")).to_be_visible()  # opened on it, not just listed

    # Duplicated: a copy with a label of its own.
    page.goto(f"{live_server.url}/admin/events/eventconfiguration/")
    page.locator("tr", has_text="EVTorderShipped").locator("input.action-select").check()
    page.select_option("select[name=action]", "duplicate")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("EVTorderShipped duplicated as EVTorderShippedCopy.")
    expect(page.locator("tr", has_text="EVTorderShippedCopy")).to_contain_text("Order shipped (copy)")


def test_marketer_inserts_the_events_fields_at_the_cursor_and_is_warned_of_a_variant_never_chosen(
    browser, live_server, marketer, organization, pages
):
    configuration = publish_events(organization, copy.deepcopy(CART_EVENT))[0]
    message = configuration.message
    url = f"/admin/transactional/transactionalmessage/{message.pk}/change/"
    page = opened(pages, log_in(browser, live_server, marketer, url))
    panel = page.locator("#event-fields")
    expect(panel.locator("button")).to_have_text(
        ["firstName", "cartAmount", "lastProduct", "products[ ] (loop)"]
    )

    # A field goes where the cursor is in the subject; the collection's loop at the end of the HTML.
    subject = page.locator("#id_subject")
    subject.fill("Your cart is waiting")
    subject.focus()
    subject.evaluate("element => element.setSelectionRange(4, 4)")  # after "Your"
    panel.get_by_role("button", name="firstName").click()
    expect(subject).to_have_value("Your{{ ctx.firstName }} cart is waiting")
    html = page.locator("#id_html")
    html.fill("<p>Hello</p>")
    html.focus()
    panel.get_by_role("button", name="products[ ] (loop)").click()
    expect(html).to_have_value(
        "<p>Hello</p>{% for item in ctx.products %}\n{{ item.sku }} {{ item.price }}\n{% endfor %}"
    )
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist")).to_contain_text("changed successfully")
    message.refresh_from_db()
    assert message.subject == "Your{{ ctx.firstName }} cart is waiting"

    # A French variant of a real-time event without AC_language: saved, and said to be never chosen.
    page.click("#add-variant")
    page.fill("#variant-0-language", "fr")
    page.fill("#variant-0-subject", "Bonjour {{ ctx.firstName }}")
    expect(page.locator("#live-preview")).to_have_attribute("data-state", "idle")  # nothing moves
    page.click("input[name=_continue]")
    expect(page.locator("#variant-warning")).to_contain_text(
        "The variant fr can never be chosen: EVTcartAbandonment is a real-time event without an AC_language"
    )
    expect(page.locator(".messagelist .warning")).to_contain_text("The variant fr can never be chosen")
