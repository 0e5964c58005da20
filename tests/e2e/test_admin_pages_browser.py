"""The admin's pages in a real browser (Playwright driving Debian's chromium), as the role that uses
each: the publication moves that ask first and say what they will do, what the message page says
after them, and pages that keep the admin's look. A failing test leaves screenshots of its pages
in var/screenshots."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from events.models import Event, FatigueRule, FilterCondition, Typology, TypologyRule
from events.schema import validate_event
from events.services import ingest
from messages import services
from tests.conftest import CART_EVENT, publish_events, seed_body
from tests.e2e import test_admin_browser
from tests.e2e.test_admin_browser import SCREENSHOTS, log_in

# The browser test's fixtures: a chromium, and the roles with fast password hashing.
browser = test_admin_browser.browser
_roles_and_fast_hashing = test_admin_browser._roles_and_fast_hashing

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def pages(request, browser):
    """The test's pages: screenshots of each when the test fails (set up after the browser, so
    taken before it closes)."""
    opened: list[Page] = []
    yield opened
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for index, page in enumerate(opened):
            page.screenshot(path=str(SCREENSHOTS / f"{request.node.name}-{index}.png"))


def opened(pages: list[Page], page: Page) -> Page:
    pages.append(page)
    return page


def queue_events(configuration, count: int) -> None:
    future = (timezone.now() + dt.timedelta(days=1)).isoformat()
    for _ in range(count):
        body = seed_body(scheduled=None, expiration=future)
        ingest(configuration=configuration, validated=validate_event(configuration.published_schema, body))


def message_url(configuration) -> str:
    return f"/admin/transactional/transactionalmessage/{configuration.message.pk}/change/"


def test_marketer_is_asked_before_pause_unpublish_and_republish_and_told_what_they_do(
    browser, live_server, marketer, organization, pages
):
    configuration = publish_events(organization, copy.deepcopy(CART_EVENT))[0]
    queue_events(configuration, 2)
    page = opened(pages, log_in(browser, live_server, marketer, message_url(configuration)))

    # Pause: the page says the two queued events are kept; going back changes nothing.
    page.click("#pause-link")
    effects = page.locator("#publication-effects")
    expect(effects).to_contain_text("2 queued events are kept, paused")
    expect(effects).to_contain_text("The endpoint keeps answering")
    page.click("text=No, go back")
    expect(page.locator(".field-status")).to_contain_text("Published")
    page.click("#pause-link")
    page.click("#confirm-publication")
    expect(page.locator(".messagelist")).to_contain_text("The message of EVTcartAbandonment is paused.")
    expect(page.locator(".field-status")).to_contain_text("Paused")
    expect(page.locator(".field-live .readonly")).to_have_text("v1 (paused: kept, not sent)")
    assert set(Event.objects.values_list("status", flat=True)) == {"paused"}

    # Republish: a second version, then an unsaved draft the republication of v1 would replace.
    page.fill("#id_subject", "Version two {{ ctx.firstName }}")
    page.click("input[name=_resume]")
    expect(page.locator(".messagelist")).to_contain_text("is resumed")
    page.fill("#id_subject", "Work in progress {{ ctx.firstName }}")
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist")).to_contain_text("changed successfully")
    page.click("text=Versions")
    page.click("text=Republish v1")
    expect(page.locator("#publication-effects")).to_contain_text(
        "The draft is replaced by the content of v1: its changes that no version has are lost"
    )
    page.click("text=No, go back")
    expect(page).to_have_url(f"{live_server.url}{message_url(configuration).replace('change/', 'versions/')}")
    configuration.message.refresh_from_db()
    assert configuration.message.subject == "Work in progress {{ ctx.firstName }}"

    # Unpublish: the endpoint goes down and the queued events fail; said before, done after.
    # The two events the pause kept are pending again since the resume (no worker runs here).
    page.goto(f"{live_server.url}{message_url(configuration)}")
    queue_events(configuration, 1)
    page.click("#unpublish-link")
    effects = page.locator("#publication-effects")
    expect(effects).to_contain_text("The REST endpoint of EVTcartAbandonment goes down")
    expect(effects).to_contain_text("3 queued events (pending or paused) will fail (routingFailed)")
    page.click("#confirm-publication")
    expect(page.locator(".messagelist")).to_contain_text("is unpublished: its endpoint is down")
    expect(page.locator(".field-status")).to_contain_text("Draft")
    expect(page.locator(".field-live .readonly")).to_have_text("None: unpublished (v2 was live)")
    configuration.refresh_from_db()
    assert not configuration.is_published


def test_administrator_is_asked_before_unpublishing_an_event_type(
    browser, live_server, administrator, organization, pages
):
    configuration = publish_events(organization, copy.deepcopy(CART_EVENT))[0]
    queue_events(configuration, 3)
    url = f"/admin/events/eventconfiguration/{configuration.pk}/change/"
    page = opened(pages, log_in(browser, live_server, administrator, url))
    page.click("#unpublish-link")
    effects = page.locator("#publication-effects")
    expect(effects).to_contain_text("The REST endpoint of EVTcartAbandonment goes down")
    expect(effects).to_contain_text("3 queued events (pending or paused) will fail (routingFailed)")
    expect(page.locator(".breadcrumbs")).to_contain_text("EVTcartAbandonment")
    page.click("#confirm-publication")
    expect(page.locator(".messagelist")).to_contain_text(
        "EVTcartAbandonment unpublished: its endpoint is down."
    )
    expect(page.locator(".field-endpoint")).to_contain_text("Not deployed")
    assert set(Event.objects.values_list("status", flat=True)) == {"routingFailed"}


def hidden_width(page: Page, selector: str) -> int:
    """How many pixels of `selector`'s content are out of sight, to the right (0: all of it shows)."""
    return page.evaluate(
        """(selector) => {
            const element = document.querySelector(selector);
            const box = element.getBoundingClientRect();
            const visible = Math.min(box.right, document.documentElement.clientWidth) - box.left;
            return Math.max(0, Math.ceil(element.scrollWidth - visible));
        }""",
        selector,
    )


def some_of_everything(organization, settings) -> object:
    """A published event type with sends, a failure and a waiting event, a test profile, a quarantined
    address, a credential: every list has rows, with the long values real ones have."""
    from campaign import services as campaign_services
    from campaign.models import Quarantine
    from events import pipeline
    from tests.factories import ProfileFactory

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    configuration = publish_events(organization, copy.deepcopy(CART_EVENT))[0]
    queue_events(configuration, 3)
    for event in Event.objects.order_by("pk")[:2]:
        pipeline.process(event.pk)
    ProfileFactory(
        organization=organization,
        email="a.very.long.address.of.a.tester@subdomain.geometrixx.example",
        mobile_phone="+33612345678",
        is_test=True,
    )
    Quarantine.objects.create(
        organization=organization,
        channel="email",
        address="bounced.address.with.a.long.name@example.com",
        reason="550 5.1.1 <bounced.address.with.a.long.name@example.com>: Recipient address rejected",
    )
    campaign_services.create_api_credential(organization=organization, name="website")
    typology = Typology.objects.get(organization=organization, is_default=True)
    rule = TypologyRule.objects.create(
        typology=typology, kind="filter", code="no_minors_in_the_loyalty_programme", name="No minors"
    )
    FilterCondition.objects.create(rule=rule, field="age", operator="lessThan", value="18")
    FatigueRule.objects.create(organization=organization, name="One a day", max_messages=1, period_hours=24)
    return configuration


@pytest.mark.parametrize("role", ["administrator", "marketer"])
def test_every_list_shows_all_its_columns_at_1400_px_and_pages_keep_their_place(
    browser, live_server, organization, settings, pages, request, role
):
    configuration = some_of_everything(organization, settings)
    user = request.getfixturevalue(role)
    page = opened(pages, log_in(browser, live_server, user, "/admin/transactional/transactionalmessage/"))
    page.set_viewport_size({"width": 1400, "height": 900})
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)

    lists = page.eval_on_selector_all(  # every list the role's sidebar offers
        "#nav-sidebar th[scope=row] a", "links => links.map(link => link.getAttribute('href'))"
    )
    assert len(lists) >= 3  # messages, deliveries, events at least
    for path in lists:
        page.goto(f"{live_server.url}{path}")
        expect(page.locator("#changelist")).to_be_visible()
        if page.locator(".results").count():
            assert hidden_width(page, ".results") == 0, f"{path} hides columns at 1400 px"
        crumbs = page.locator(".breadcrumbs").inner_text().split("›")
        assert len({crumb.strip() for crumb in crumbs}) == len(crumbs), f"{path}: {crumbs}"

    # The message's own pages: breadcrumbs through the messages' list; the diff within the page.
    message = configuration.message
    message.html = "<p>" + "A long line of the newer draft, " * 12 + "</p>"
    services.save_draft(message=message)
    base = f"/admin/transactional/transactionalmessage/{message.pk}"
    for step, path in (("Preview", "preview/"), ("Versions", "versions/"), ("Send a proof", "proof/")):
        if step == "Send a proof" and role == "administrator":
            continue  # the same page; once is enough
        page.goto(f"{live_server.url}{base}/{path}")
        crumbs = [crumb.strip() for crumb in page.locator(".breadcrumbs").inner_text().split("›")]
        assert crumbs == ["Home", "Messages and deliveries", "Transactional messages", str(message), step]
        assert page.evaluate("document.documentElement.scrollWidth") <= 1400, f"{path} overflows"
    assert not [url for url in missing if url.endswith("/favicon.ico")]


def test_administrator_bulk_deletes_and_is_told_why_not_with_a_way_back(
    browser, live_server, administrator, organization, pages
):
    from events.models import EventConfiguration
    from events.publication import unpublish_configuration
    from messages.models import TransactionalMessage
    from tests.factories import ConfigurationFactory

    configuration = publish_events(organization, copy.deepcopy(CART_EVENT))[0]
    queue_events(configuration, 1)
    unpublish_configuration(configuration=configuration)
    ConfigurationFactory(organization=organization, name="spare")
    page = opened(pages, log_in(browser, live_server, administrator, "/admin/events/eventconfiguration/"))

    # Both selected: refused, saying which one keeps events, with a way back to the list.
    page.check("#action-toggle")
    page.select_option("select[name=action]", "delete_selected")
    page.click("button[name=index]")
    expect(page.locator("#content")).to_contain_text(
        "EVTcartAbandonment still has 1 event(s), kept for their history"
    )
    page.click("#back-to-list")
    expect(page).to_have_url(f"{live_server.url}/admin/events/eventconfiguration/")

    # The spare one alone: asked, then deleted.
    for box in page.locator("input.action-select").all():
        box.uncheck()  # the browser may restore the earlier selection
    page.locator("tr", has_text="EVTspare").locator("input.action-select").check()
    page.select_option("select[name=action]", "delete_selected")
    page.click("button[name=index]")
    page.click("input[type=submit]")  # "Yes, I'm sure"
    expect(page.locator(".messagelist")).to_contain_text("Successfully deleted 1")
    assert list(EventConfiguration.objects.values_list("name", flat=True)) == ["cartAbandonment"]

    # The draft message of the unpublished event type goes from the messages' list.
    page.goto(f"{live_server.url}/admin/transactional/transactionalmessage/")
    page.check("#action-toggle")
    page.select_option("select[name=action]", "delete_selected")
    page.click("button[name=index]")
    expect(page.locator("#content")).to_contain_text("Message versions: 1")
    page.click("input[type=submit]")
    expect(page.locator(".messagelist")).to_contain_text("Successfully deleted 1")
    assert not TransactionalMessage.objects.exists()


def test_marketer_sees_who_published_as_text_and_a_refused_page_in_the_admins_look(
    browser, live_server, marketer, organization, pages
):
    configuration = publish_events(organization, copy.deepcopy(CART_EVENT))[0]
    page = opened(pages, log_in(browser, live_server, marketer, message_url(configuration)))
    page.fill("#id_subject", "New {{ ctx.firstName }}")
    page.click("input[name=_publish]")
    expect(page.locator(".messagelist")).to_contain_text("is published")
    publisher = page.locator("#versions-group td.field-publisher").first
    expect(publisher).to_have_text(marketer.username)
    expect(publisher.locator("a")).to_have_count(0)

    # A page the role may not open (a link someone sent): the admin's look, and a way back.
    page.evaluate("url => { window.location.href = url }", f"{live_server.url}/admin/auth/user/")
    expect(page.locator("#permission-denied")).to_contain_text("Your role does not allow this page")
    expect(page.locator("#header")).to_contain_text("Transactional messaging")
    page.click("#go-back")
    expect(page).to_have_url(f"{live_server.url}{message_url(configuration)}")
