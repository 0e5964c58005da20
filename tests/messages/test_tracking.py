"""Opens and clicks of email: the pixel and the rewritten links of a real send over SMTP, the hits
their requests record (first, automated), forged links, the per-message switches, PUBLIC_URL unset,
and the counts reports read."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from events import pipeline
from events.configuration_file import ConfigurationFileError, export_organization
from events.models import Event
from events.schema import validate_event
from events.services import ingest
from messages import services, tracking
from messages.lifecycle import event_side
from messages.models import Delivery, TrackingHit
from tests.admin_forms import change_form_data
from tests.conftest import CART_EVENT, publish_events, seed_body
from tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db

PUBLIC = "https://track.example.com"
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0"
FUTURE = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.000Z")

LINKS_HTML = (
    "<html><body><p>Hello {{ ctx.firstName }}</p>"
    '<a href="https://shop.example.com/cart?item=1&amp;ref=mail">Your cart</a>'
    "<a href='https://shop.example.com/help'>Help</a>"
    '<a href="mailto:help@example.com">Write to us</a>'
    '<a href="tel:+33123456789">Call us</a>'
    '<a href="https://shop.example.com/cart?item=1&amp;ref=mail">Cart again</a>'
    "</body></html>"
)

LINKS_EVENT = {
    **copy.deepcopy(CART_EVENT),
    "name": "cartWithLinks",
    "message": {"subject": "Your cart, {{ ctx.firstName }}", "html": LINKS_HTML, "text": ""},
}

WELCOME = {
    "name": "welcome",
    "channel": "email",
    "targeting": "profile",
    "fields": [{"name": "email", "type": "email"}],
    "reconciliation": {"eventField": "email", "profileField": "email"},
    "message": {
        "subject": "Welcome",
        "html": '<p><a href="https://example.com/start">Start</a></p>'
        "<p><a href='{{ unsubscribe_url }}'>Unsubscribe</a></p>",
        "text": "",
    },
}


@pytest.fixture(autouse=True)
def _public_url(settings):
    settings.PUBLIC_URL = PUBLIC + "/"


def accept(configuration, body) -> Event:
    event, _ = ingest(
        configuration=configuration, validated=validate_event(configuration.published_schema, body)
    )
    return event


def send_one(configuration, mailbox, **body) -> tuple[Event, str]:
    """Send one event over SMTP and answer it with the HTML part as received."""
    before = len(mailbox.messages)
    event = accept(configuration, {**seed_body(scheduled=None, expiration=FUTURE), **body})
    assert pipeline.process(event.pk) == "processed"
    received = mailbox.wait_for(before + 1)
    assert len(received) == before + 1
    event.refresh_from_db()
    return event, received[-1].part("text/html")


def local(url: str) -> str:
    assert url.startswith(PUBLIC + "/"), url
    return url[len(PUBLIC) :]


def pixel_of(html: str) -> str:
    (src,) = re.findall(r'<img src="([^"]+/t/o/[^"]+)"', html)
    return local(src)


def tracked_links(html: str) -> list[str]:
    return [local(url) for url in re.findall(r'href="([^"]+/t/c/[^"]+)"', html)]


def sent_a_while_ago(event: Event) -> None:
    """Move the send back in time, past the second in which an open counts as a scanner's."""
    Delivery.objects.filter(event_link__event=event).update(
        created_at=timezone.now() - dt.timedelta(minutes=5)
    )


@pytest.fixture
def links_configuration(organization):
    return publish_events(organization, copy.deepcopy(LINKS_EVENT))[0]


def test_a_sent_email_carries_the_pixel_and_rewritten_web_links(links_configuration, smtp_email):
    event, html = send_one(links_configuration, smtp_email)
    delivery = event.deliveries.get()
    assert len(delivery.tracking_id) == 16
    assert delivery.tracked_links == [
        "https://shop.example.com/cart?item=1&ref=mail",
        "https://shop.example.com/help",
    ]
    assert pixel_of(html) == reverse("tracking-open", args=[tracking.open_token(delivery.tracking_id)])
    links = tracked_links(html)
    assert len(links) == 3 and links[0] == links[2]  # the same URL twice: one link index
    assert "shop.example.com" not in html  # no original web link left in the HTML part
    assert 'href="mailto:help@example.com"' in html and 'href="tel:+33123456789"' in html
    assert html.index("/t/o/") < html.index("</body>")  # the pixel inside the body


def test_opening_records_an_open_flagged_first_then_one_that_is_not(links_configuration, smtp_email, client):
    event, html = send_one(links_configuration, smtp_email)
    sent_a_while_ago(event)
    answer = client.get(pixel_of(html), HTTP_USER_AGENT=BROWSER)
    assert answer.status_code == 200 and answer["Content-Type"] == "image/gif"
    assert answer.content == tracking.PIXEL and "no-store" in answer["Cache-Control"]
    assert client.get(pixel_of(html), HTTP_USER_AGENT=BROWSER).status_code == 200
    first, second = TrackingHit.objects.order_by("id")
    delivery = event.deliveries.get()
    assert (first.kind, first.first, first.automated) == ("open", True, False)
    assert (second.kind, second.first, second.automated) == ("open", False, False)
    assert first.delivery == delivery and first.version == event.message_version
    assert first.delivery.event_link.event == event  # the hit's event, through its delivery


def test_a_click_redirects_to_the_original_url_and_is_recorded(links_configuration, smtp_email, client):
    event, html = send_one(links_configuration, smtp_email)
    cart, help_link, _ = tracked_links(html)
    answer = client.get(cart, HTTP_USER_AGENT=BROWSER)
    assert answer.status_code == 302
    assert answer["Location"] == "https://shop.example.com/cart?item=1&ref=mail"
    assert client.get(help_link, HTTP_USER_AGENT=BROWSER)["Location"] == "https://shop.example.com/help"
    first, second = TrackingHit.objects.order_by("id")
    assert (first.kind, first.link_index, first.url, first.first) == (
        "click",
        0,
        "https://shop.example.com/cart?item=1&ref=mail",
        True,
    )
    assert (second.link_index, second.first, second.automated) == (1, False, False)
    assert second.delivery == event.deliveries.get()


def altered(token_path: str) -> list[str]:
    """The same link with one character of its token changed, cut, or grown."""
    prefix, token = token_path.rsplit("/", 1)
    suffix = ".gif" if token.endswith(".gif") else ""
    token = token.removesuffix(".gif")
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    tracking_id, _, rest = token.partition(".")
    other_id = ("x" if tracking_id[0] != "x" else "y") + tracking_id[1:]
    return [
        f"{prefix}/{flipped}{suffix}",
        f"{prefix}/{token[:-5]}{suffix}",
        f"{prefix}/{other_id}.{rest}{suffix}",
        f"{prefix}/{token}{'A' * 200}{suffix}",
        f"{prefix}/nonsense{suffix}",
    ]


def test_forged_or_altered_links_answer_404_and_record_nothing(links_configuration, smtp_email, client):
    event, html = send_one(links_configuration, smtp_email)
    delivery = event.deliveries.get()
    cart = tracked_links(html)[0]
    forged_index = reverse("tracking-click", args=[tracking.click_token(delivery.tracking_id, 0)]).replace(
        ".0.", ".1."
    )
    other_key = tracking.click_token(delivery.tracking_id, 7)  # a well-signed index past its links
    for path in [*altered(pixel_of(html)), *altered(cart), forged_index, f"/t/c/{other_key}"]:
        answer = client.get(path, HTTP_USER_AGENT=BROWSER)
        assert answer.status_code == 404, path
        assert "Location" not in answer
    # An open token is no click token, and the reverse.
    assert client.get("/t/c/" + pixel_of(html).rsplit("/", 1)[1].removesuffix(".gif")).status_code == 404
    assert client.get("/t/o/" + cart.rsplit("/", 1)[1] + ".gif").status_code == 404
    assert not TrackingHit.objects.exists()


def test_a_link_signed_with_another_key_is_refused_and_a_former_key_still_works(
    links_configuration, smtp_email, client, settings
):
    event, html = send_one(links_configuration, smtp_email)
    cart = tracked_links(html)[0]
    former = settings.SECRET_KEY
    settings.SECRET_KEY = "another-key-" + "x" * 50
    assert client.get(cart, HTTP_USER_AGENT=BROWSER).status_code == 404
    settings.SECRET_KEY_FALLBACKS = [former]
    assert client.get(cart, HTTP_USER_AGENT=BROWSER).status_code == 302
    assert TrackingHit.objects.count() == 1


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"HTTP_USER_AGENT": "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))"}, "user agent: barracuda"),
        ({"HTTP_USER_AGENT": "python-requests/2.32"}, "user agent: python-requests"),
        ({}, "no user agent"),
        ({"HTTP_USER_AGENT": BROWSER, "HTTP_PURPOSE": "prefetch"}, "prefetch"),
        ({"HTTP_USER_AGENT": BROWSER, "HTTP_SEC_PURPOSE": "prefetch;prerender"}, "prefetch"),
    ],
)
def test_automated_requests_are_recorded_but_never_first(
    links_configuration, smtp_email, client, headers, reason
):
    event, html = send_one(links_configuration, smtp_email)
    sent_a_while_ago(event)
    assert client.get(pixel_of(html), **headers).status_code == 200
    assert client.get(tracked_links(html)[0], **headers).status_code == 302
    hits = list(TrackingHit.objects.order_by("id"))
    assert [(h.kind, h.automated, h.first, h.automated_reason) for h in hits] == [
        ("open", True, False, reason),
        ("click", True, False, reason),
    ]
    # The reader's own open afterwards is the first.
    client.get(pixel_of(html), HTTP_USER_AGENT=BROWSER)
    assert TrackingHit.objects.get(first=True).automated is False


def test_an_open_within_a_second_of_the_send_is_automated(links_configuration, smtp_email, client):
    event, html = send_one(links_configuration, smtp_email)
    Delivery.objects.filter(event_link__event=event).update(created_at=timezone.now())
    client.get(pixel_of(html), HTTP_USER_AGENT=BROWSER)
    hit = TrackingHit.objects.get()
    assert hit.automated and not hit.first and hit.automated_reason == "open within 1 s of the send"


def test_a_head_request_is_automated(links_configuration, smtp_email, client):
    _, html = send_one(links_configuration, smtp_email)
    assert client.head(tracked_links(html)[0], HTTP_USER_AGENT=BROWSER).status_code == 302
    assert TrackingHit.objects.get().automated_reason == "HEAD request"
    assert client.post(tracked_links(html)[0]).status_code == 405


def test_the_unsubscribe_link_is_left_as_written(organization, smtp_email, client):
    configuration = publish_events(organization, copy.deepcopy(WELCOME))[0]
    profile = ProfileFactory(organization=organization, email="jane@example.com")
    event, html = send_one(configuration, smtp_email, ctx={"email": "jane@example.com"}, email=None)
    unsubscribe = services.unsubscribe_url(profile=profile, event_pkey=event.pkey)
    assert unsubscribe.startswith(PUBLIC + "/u/")
    assert f'href="{unsubscribe}"' in html  # as written (css-inline quotes it again)
    assert len(tracked_links(html)) == 1 and event.deliveries.get().tracked_links == [
        "https://example.com/start"
    ]


def switch_off(configuration, *, opens: bool, clicks: bool) -> None:
    message = configuration.message
    message.track_opens, message.track_clicks = opens, clicks
    services.save_draft(message=message)
    message.refresh_from_db()
    assert message.has_unpublished_changes  # a switch is part of the content: published to take effect
    event_side().publish(message=message, user=None)


@pytest.mark.parametrize(("opens", "clicks"), [(False, False), (False, True), (True, False)])
def test_the_message_switches_decide_what_is_tracked(links_configuration, smtp_email, opens, clicks):
    _, before = send_one(links_configuration, smtp_email)
    assert "/t/o/" in before and "/t/c/" in before  # both on by default
    switch_off(links_configuration, opens=opens, clicks=clicks)
    event, html = send_one(links_configuration, smtp_email)
    assert ("/t/o/" in html) is opens
    assert ("/t/c/" in html) is clicks
    if not clicks:
        assert '<a href="https://shop.example.com/cart?item=1&amp;ref=mail">' in html
    assert event.message_version.content["tracking"] == {"opens": opens, "clicks": clicks}
    delivery = event.deliveries.get()
    assert bool(delivery.tracking_id) is (opens or clicks)


def test_without_public_url_nothing_is_tracked(links_configuration, smtp_email, settings):
    settings.PUBLIC_URL = ""
    event, html = send_one(links_configuration, smtp_email)
    assert "/t/o/" not in html and "/t/c/" not in html
    assert '<a href="https://shop.example.com/cart?item=1&amp;ref=mail">' in html
    assert event.deliveries.get().tracking_id == ""


def test_previews_and_proofs_are_not_tracked(links_configuration):
    rendered = services.preview_message(message=links_configuration.message)
    assert "/t/o/" not in rendered.parts["html"] and not rendered.tracking_id


def change_url(message) -> str:
    return reverse("admin:transactional_transactionalmessage_change", args=[message.pk])


def test_the_editor_says_when_tracking_is_off_and_switches_it(
    client, marketer, links_configuration, settings
):
    message = links_configuration.message
    client.force_login(marketer)
    page = client.get(change_url(message)).content.decode()
    assert "Track opens" in page and "Track clicks" in page and "Opens and clicks" in page
    settings.PUBLIC_URL = ""
    page = client.get(change_url(message))
    assert "Tracking is off: <code>PUBLIC_URL</code> is not set" in page.content.decode()
    answer = client.post(change_url(message), change_form_data(page, track_clicks=None, _save="Save"))
    assert answer.status_code == 302
    message.refresh_from_db()
    assert message.track_opens and not message.track_clicks
    assert message.draft_content()["tracking"] == {"opens": True, "clicks": False}


def test_the_configuration_file_carries_the_switches(organization):
    event = copy.deepcopy(LINKS_EVENT)
    event["message"]["tracking"] = {"opens": False, "clicks": True}
    message = publish_events(organization, event)[0].message
    assert (message.track_opens, message.track_clicks) == (False, True)
    assert message.live_version.content["tracking"] == {"opens": False, "clicks": True}


@pytest.mark.parametrize("bad", [{"opens": "no"}, {"views": False}, "off", {"opens": 0}])
def test_the_configuration_file_refuses_bad_switches(organization, bad):

    event = copy.deepcopy(LINKS_EVENT)
    event["message"]["tracking"] = bad
    with pytest.raises(ConfigurationFileError, match="tracking"):
        publish_events(organization, event)


def test_counts_total_unique_and_automated_per_version_and_period(links_configuration, smtp_email, client):
    events = []
    for index in range(3):
        event, html = send_one(links_configuration, smtp_email, email=f"reader{index}@example.com")
        sent_a_while_ago(event)
        events.append((event, html))
    (e0, h0), (e1, h1), (e2, h2) = events
    client.get(pixel_of(h0), HTTP_USER_AGENT=BROWSER)
    client.get(pixel_of(h0), HTTP_USER_AGENT=BROWSER)
    client.get(pixel_of(h1), HTTP_USER_AGENT=BROWSER)
    client.get(pixel_of(h2), HTTP_USER_AGENT="Mimecast link scanner")
    client.get(tracked_links(h0)[0], HTTP_USER_AGENT=BROWSER)
    client.get(tracked_links(h0)[1], HTTP_USER_AGENT=BROWSER)
    client.get(tracked_links(h1)[1], HTTP_USER_AGENT=BROWSER)
    version_ids = [e0.message_version_id]
    counted = tracking.counts(version_ids=version_ids)
    assert counted == tracking.Counts(
        opens=4, unique_opens=2, automated_opens=1, clicks=3, unique_clicks=2, automated_clicks=0
    )
    later = timezone.now() + dt.timedelta(hours=1)
    assert tracking.counts(version_ids=version_ids, since=later) == tracking.Counts()
    assert tracking.counts(version_ids=[], until=later) == tracking.Counts()
    (hourly,) = tracking.hourly_counts(version_ids=version_ids).values()
    assert hourly == counted
    hot = tracking.link_clicks(version_ids=version_ids)
    assert [(h.url, h.clicks, h.unique_clicks) for h in hot] == [
        ("https://shop.example.com/help", 2, 2),
        ("https://shop.example.com/cart?item=1&ref=mail", 1, 1),
    ]


def test_one_first_open_per_delivery_even_when_two_race(links_configuration, smtp_email, rf):
    event, _ = send_one(links_configuration, smtp_email)
    sent_a_while_ago(event)
    delivery = event.deliveries.get()
    request = rf.get("/", HTTP_USER_AGENT=BROWSER)
    TrackingHit.objects.create(
        organization_id=delivery.organization_id,
        delivery=delivery,
        message_id=delivery.message_id,
        version_id=delivery.version_id,
        kind="open",
        first=True,
    )
    # The check before the insert saw no first open (as a racing request would): the constraint decides.
    original = TrackingHit.objects.filter

    class Unseen:
        def exists(self):
            return False

    import unittest.mock

    with unittest.mock.patch.object(
        TrackingHit.objects,
        "filter",
        side_effect=lambda *a, **k: Unseen() if k.get("first") else original(*a, **k),
    ):
        hit = tracking.record_hit(request=request, delivery=delivery, kind="open")
    assert hit.pk and not hit.first
    assert TrackingHit.objects.filter(first=True).count() == 1


def test_a_link_marked_data_no_track_and_links_beyond_the_bound_stay_as_written(settings):
    many = "".join(
        f'<a href="https://example.com/{n}">{n}</a>' for n in range(tracking.MAX_TRACKED_LINKS + 5)
    )
    html = f'<a data-no-track href="https://example.com/private">x</a>{many}'
    tracked = tracking.rewrite(html, opens=False, clicks=True)
    assert tracked is not None and len(tracked.links) == tracking.MAX_TRACKED_LINKS
    assert '<a data-no-track href="https://example.com/private">' in tracked.html
    assert f'<a href="https://example.com/{tracking.MAX_TRACKED_LINKS}">' in tracked.html
    assert tracked.html.count("/t/c/") == tracking.MAX_TRACKED_LINKS
    assert "/t/o/" not in tracked.html
    assert tracking.rewrite(html, opens=False, clicks=False) is None
    settings.PUBLIC_URL = ""
    assert tracking.rewrite(html, opens=True, clicks=True) is None


def test_a_token_is_compact_and_url_safe():
    token = tracking.click_token("A" * 16, 199)
    assert len(token) <= 70 and re.fullmatch(r"[A-Za-z0-9_.-]+", token)


OTP = {
    "name": "otp",
    "channel": "sms",
    "fields": [{"name": "code", "type": "text"}],
    "message": {
        "text": "Code {{ ctx.code }}: see https://shop.example.com/order?id=1&x=2. Help: https://shop.example.com/help!"
    },
}


def send_sms(configuration, outbox) -> tuple[Event, str]:
    event = accept(configuration, {"mobilePhone": "+33612345678", "ctx": {"code": "4242"}})
    assert pipeline.process(event.pk) == "processed"
    (written,) = sorted(outbox.iterdir())[-1:]
    event.refresh_from_db()
    return event, json.loads(written.read_text())["text"]


@pytest.fixture
def sms_outbox(settings, tmp_path):
    settings.CHANNEL_OUTBOX_DIR = str(tmp_path)
    return tmp_path / "sms"


def test_sms_click_tracking_is_off_unless_the_message_opts_in(organization, sms_outbox, client, marketer):
    configuration = publish_events(organization, copy.deepcopy(OTP))[0]
    message = configuration.message
    assert (message.track_opens, message.track_clicks) == (
        False,
        False,
    ) and not message.has_unpublished_changes
    event, text = send_sms(configuration, sms_outbox)
    assert (
        text == "Code 4242: see https://shop.example.com/order?id=1&x=2. Help: https://shop.example.com/help!"
    )
    assert event.deliveries.get().tracking_id == ""
    client.force_login(marketer)
    page = client.get(change_url(message))
    assert "Track opens" not in page.content.decode() and "short signed links" in page.content.decode()
    client.post(change_url(message), change_form_data(page, track_clicks="on", _publish="Save and publish"))
    message.refresh_from_db()
    assert message.live_version.content["tracking"] == {"clicks": True}

    event, text = send_sms(configuration, sms_outbox)
    short = [link.rstrip(".") for link in re.findall(r"https://track\.example\.com/s/[A-Za-z0-9_.-]+", text)]
    assert len(short) == 2 and all(len(link) <= len(PUBLIC) + 30 for link in short)
    assert text == f"Code 4242: see {short[0]}. Help: {short[1]}!"  # the punctuation after a link kept
    answer = client.get(local(short[0]), HTTP_USER_AGENT=BROWSER)
    assert answer.status_code == 302 and answer["Location"] == "https://shop.example.com/order?id=1&x=2"
    assert (
        client.get(local(short[0]) + ".", HTTP_USER_AGENT=BROWSER).status_code == 302
    )  # a phone's full stop
    hit = TrackingHit.objects.order_by("id").first()
    assert (hit.kind, hit.first, hit.url, hit.delivery) == (
        "click",
        True,
        answer["Location"],
        event.deliveries.get(),
    )
    for forged in altered(local(short[1])):
        assert client.get(forged, HTTP_USER_AGENT=BROWSER).status_code == 404, forged
    assert TrackingHit.objects.count() == 2


def test_sms_tracking_in_the_configuration_file(organization):
    event = copy.deepcopy(OTP)
    event["message"]["tracking"] = {"clicks": True}
    message = publish_events(organization, event)[0].message
    assert message.track_clicks and export_organization(organization)["events"][0]["message"]["tracking"] == {
        "clicks": True
    }
    event = {**copy.deepcopy(OTP), "name": "otp2"}
    event["message"]["tracking"] = {"opens": True, "clicks": True}
    with pytest.raises(ConfigurationFileError, match='tracking.*"clicks": true or false'):
        publish_events(organization, event)


def test_the_export_writes_the_switches_only_when_one_is_off(organization, links_configuration):
    def exported() -> dict:
        (entry,) = [e for e in export_organization(organization)["events"] if e["name"] == "cartWithLinks"]
        return entry["message"]

    assert "tracking" not in exported()
    switch_off(links_configuration, opens=False, clicks=True)
    assert exported()["tracking"] == {"opens": False, "clicks": True}


@pytest.mark.django_db(transaction=True)
def test_upgrading_keeps_drafts_equal_to_their_versions_email_tracked_and_sms_not():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("transactional", "0005_channel_choices_from_registry")]
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(before)
    try:
        executor.loader.build_graph()
        apps = executor.loader.project_state(before).apps
        Message = apps.get_model("transactional", "TransactionalMessage")
        email = Message.objects.create(channel="email", subject="Hi", html="<p>Hi</p>")
        sms = Message.objects.create(channel="sms", text="Code")
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
        from messages.models import TransactionalMessage

        email, sms = (TransactionalMessage.objects.get(pk=m.pk) for m in (email, sms))
        assert (email.track_opens, email.track_clicks) == (True, True)
        assert (sms.track_opens, sms.track_clicks) == (False, False)
        assert "tracking" not in email.draft_content() and "tracking" not in sms.draft_content()
    finally:
        MigrationExecutor(connection).migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
