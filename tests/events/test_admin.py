"""Event configurations and events in the admin: who may open them, organization scoping, creating
an event type with its fields, publication from the admin, and the API preview it then shows."""

from __future__ import annotations

import copy
import datetime as dt
import json
from html import unescape

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import strip_tags

from events.models import Event, EventConfiguration
from events.publication import unpublish_configuration
from events.schema import validate_event
from events.services import ingest
from messages.models import Delivery, MessageVersion, TransactionalMessage
from tests.admin_forms import change_form_data
from tests.conftest import CART_EVENT, publish_events, seed_body
from tests.factories import ConfigurationFactory, FieldFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:events_eventconfiguration_changelist")
ADD = reverse("admin:events_eventconfiguration_add")
EVENTS = reverse("admin:events_event_changelist")
FUTURE = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.000Z")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def change_url(configuration: EventConfiguration) -> str:
    return reverse("admin:events_eventconfiguration_change", args=[configuration.pk])


def unpublish_url(configuration: EventConfiguration) -> str:
    return reverse("admin:events_eventconfiguration_unpublish", args=[configuration.pk])


def accept(configuration: EventConfiguration, **overrides) -> Event:
    body = {**seed_body(scheduled=None, expiration=FUTURE), **overrides}
    event, _ = ingest(
        configuration=configuration, validated=validate_event(configuration.published_schema, body)
    )
    return event


def add_configuration(client, *, name: str, fields=(), **values):
    """Fill in the admin's "Add event configuration" page as an administrator would, and submit it."""
    page = client.get(ADD)
    assert page.status_code == 200
    data = {
        key: value
        for key, value in change_form_data(page, name=name, label=f"The {name} event", **values).items()
        if not key.startswith(("fields-0-", "initial-fields-0-"))
    }
    data["fields-TOTAL_FORMS"] = str(len(fields))
    for index, field in enumerate(fields):
        field_name, field_type, *allowed = field
        values = json.dumps(allowed[0]) if allowed else "[]"
        row = {"name": field_name, "type": field_type, "collection": "", "label": "", "values": values}
        data.update({f"fields-{index}-{key}": value for key, value in row.items()})
        data[f"fields-{index}-position"] = str(index)
    return client.post(ADD, data)


def form_errors(response) -> dict:
    assert response.status_code == 200, "expected the form again, with errors"
    return response.context["adminform"].form.errors


@pytest.fixture
def other_configuration(other_organization) -> EventConfiguration:
    event = {**copy.deepcopy(CART_EVENT), "name": "acmeSecretLaunch", "label": "Acme secret launch"}
    return publish_events(other_organization, event)[0]


# --- Who may open what ---------------------------------------------------------------------------


def test_marketer_is_forbidden_every_event_configuration_page(client, marketer, cart_configuration):
    client.force_login(marketer)
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(ADD).status_code == 403
    assert client.get(change_url(cart_configuration)).status_code == 403
    answer = client.post(change_url(cart_configuration), {"label": "changed", "_unpublish": "Unpublish"})
    assert answer.status_code == 403
    cart_configuration.refresh_from_db()
    assert cart_configuration.is_published and cart_configuration.label == "Cart abandonment"


def test_marketer_lists_and_reads_events_but_cannot_change_them(client, marketer, cart_configuration):
    event = accept(cart_configuration)
    client.force_login(marketer)
    listing = client.get(EVENTS)
    assert listing.status_code == 200
    assert event.pkey in listing.content.decode()
    url = reverse("admin:events_event_change", args=[event.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert "test@example.com" in page.content.decode()
    assert 'name="_save"' not in page.content.decode()
    assert client.post(url, {"status": "processed"}).status_code == 403
    event.refresh_from_db()
    assert event.status == "pending"


def test_administrator_sees_the_status_history_of_an_event(client, administrator, cart_configuration):
    event = accept(cart_configuration)
    Event.objects.filter(pk=event.pk).update(status="processing")  # history rows come from transitions
    event.status_changes.create(from_status="pending", to_status="processing", reason="claimed by a worker")
    client.force_login(administrator)
    page = client.get(reverse("admin:events_event_change", args=[event.pk]))
    assert "claimed by a worker" in page.content.decode()


def event_page_fields(client, event: Event) -> dict[str, str]:
    """The event page's read-only fields: label -> shown value (whitespace collapsed)."""
    import re

    html = client.get(reverse("admin:events_event_change", args=[event.pk])).content.decode()
    rows = re.findall(
        r'<div class="flex-container">\s*<label>(.*?):</label>\s*<div class="readonly">(.*?)</div>',
        html,
        re.S,
    )
    return {strip_tags(label).strip(): " ".join(unescape(strip_tags(value)).split()) for label, value in rows}


def test_the_event_page_says_why_the_event_is_where_it_is_and_no_queue_times_once_it_is_done(
    client, marketer, cart_configuration, settings
):
    from events import pipeline

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    client.force_login(marketer)
    waiting = accept(cart_configuration)
    fields = event_page_fields(client, waiting)
    assert fields["Status"] == "Pending" and "Next attempt at" in fields
    assert "Last error" not in fields  # no attempt left one

    assert pipeline.process(waiting.pk) == "processed"
    fields = event_page_fields(client, waiting)
    assert fields["Status"] == "Processed"
    assert fields["Why"] != "-"  # the provider's message id
    assert not {"Next attempt at", "Enqueued at", "Lease expires at"} & set(fields)

    failed = accept(cart_configuration)
    unpublish_configuration(configuration=cart_configuration)
    fields = event_page_fields(client, failed)
    assert fields["Status"] == "Routing failed"
    assert fields["Why"] == "the event type was unpublished"
    assert "Next attempt at" not in fields

    retried = Event.objects.filter(pk=failed.pk)
    retried.update(status="deliveryFailed", last_error="421 try later")
    assert event_page_fields(client, failed)["Last error"] == "421 try later"


# --- Organization scoping ----------------------------------------------------------------------


def test_administrator_lists_only_the_own_organizations_configurations(
    client, administrator, cart_configuration, other_configuration
):
    client.force_login(administrator)
    html = client.get(CHANGELIST).content.decode()
    assert "EVTcartAbandonment" in html
    assert "EVTacmeSecretLaunch" not in html


def test_another_organizations_configuration_cannot_be_opened_changed_or_deleted_by_url(
    client, administrator, other_configuration
):
    client.force_login(administrator)
    url = change_url(other_configuration)
    page = client.get(url, follow=True)
    html = page.content.decode()
    assert "Acme secret launch" not in html and "acmeSecretLaunch" not in html
    assert page.status_code == 404 or "doesn’t exist" in html

    client.post(url, {"name": "stolen", "label": "stolen", "_unpublish": "Unpublish"})
    client.post(
        reverse("admin:events_eventconfiguration_delete", args=[other_configuration.pk]), {"post": "yes"}
    )
    other_configuration.refresh_from_db()
    assert other_configuration.name == "acmeSecretLaunch" and other_configuration.is_published


def test_administrator_lists_only_the_own_organizations_events(
    client, administrator, cart_configuration, other_configuration
):
    ours = accept(cart_configuration)
    theirs = accept(other_configuration, email="secret@acme.example.com")
    client.force_login(administrator)
    html = client.get(EVENTS).content.decode()
    assert ours.pkey in html
    assert theirs.pkey not in html
    assert "EVTacmeSecretLaunch" not in html  # nor in the event-type filter
    page = client.get(reverse("admin:events_event_change", args=[theirs.pk]), follow=True)
    assert "secret@acme.example.com" not in page.content.decode()


def test_a_configuration_created_by_an_administrator_belongs_to_the_administrators_organization(
    client, administrator, organization, other_organization
):
    client.force_login(administrator)
    # Even a forged organization in the POST is ignored: the page has no such field.
    answer = add_configuration(client, name="orderShipped", organization=str(other_organization.pk))
    assert answer.status_code == 302
    configuration = EventConfiguration.objects.get(name="orderShipped")
    assert configuration.organization == organization


# --- Creating an event type ------------------------------------------------------------------------


@pytest.mark.parametrize("typed", ["orderShipped", "EVTorderShipped", " EVTorderShipped "])
def test_the_name_is_stored_without_the_evt_prefix_however_it_is_typed(client, administrator, typed):
    client.force_login(administrator)
    answer = add_configuration(
        client,
        name=typed,
        fields=[("orderId", "text"), ("total", "decimal"), ("tier", "text", ["gold", "silver"])],
    )
    assert answer.status_code == 302
    configuration = EventConfiguration.objects.get()
    assert configuration.name == "orderShipped"
    assert configuration.event_id == "EVTorderShipped"
    assert [(f.name, f.type, f.values) for f in configuration.fields.order_by("position")] == [
        ("orderId", "text", []),
        ("total", "decimal", []),
        ("tier", "text", ["gold", "silver"]),
    ]
    assert configuration.status == "draft"


@pytest.mark.parametrize("typed", ["cartAbandonment", "EVTcartAbandonment"])
def test_a_name_already_used_in_the_organization_is_a_form_error(
    client, administrator, cart_configuration, typed
):
    client.force_login(administrator)
    errors = form_errors(add_configuration(client, name=typed))
    assert "EVTcartAbandonment already exists" in errors["name"][0]
    assert EventConfiguration.objects.filter(name="cartAbandonment").count() == 1


def test_the_same_name_in_another_organization_is_fine(client, administrator, other_configuration):
    client.force_login(administrator)
    answer = add_configuration(client, name="acmeSecretLaunch")
    assert answer.status_code == 302
    assert EventConfiguration.objects.filter(name="acmeSecretLaunch").count() == 2


def test_two_fields_of_one_name_are_refused_saying_it_once(client, administrator):
    client.force_login(administrator)
    answer = add_configuration(client, name="orderShipped", fields=[("orderId", "text"), ("orderId", "url")])
    page = answer.content.decode()
    assert answer.status_code == 200
    assert page.count("has this name already") == 1 and "duplicate" not in page
    assert not EventConfiguration.objects.exists()


def test_an_invalid_name_is_a_form_error(client, administrator):
    client.force_login(administrator)
    errors = form_errors(add_configuration(client, name="order shipped!"))
    assert "letters, digits and '_'" in errors["name"][0]
    assert not EventConfiguration.objects.exists()


def test_save_and_publish_deploys_the_endpoint_and_creates_the_draft_message(client, administrator, api):
    client.force_login(administrator)
    answer = add_configuration(
        client,
        name="orderShipped",
        fields=[("orderId", "text"), ("trackingUrl", "url")],
        _publish="Save and publish",
    )
    configuration = EventConfiguration.objects.get(name="orderShipped")
    assert answer.status_code == 302 and answer.url == change_url(configuration)
    assert configuration.is_published
    assert configuration.message.status == "draft"
    assert "{{ ctx.orderId }}" in configuration.message.html  # a first draft listing the fields

    html = client.get(answer.url).content.decode()
    assert "EVTorderShipped published: its endpoint answers." in html
    assert "http://testserver/geometrixx/campaign/mcgeometrixx/EVTorderShipped" in html
    assert "curl -X POST" in html and "X-Api-Key: &lt;API_KEY&gt;" in html
    assert "&quot;orderId&quot;" in html and "&quot;trackingUrl&quot;" in html  # the JSON body's ctx
    assert reverse("admin:transactional_transactionalmessage_change", args=[configuration.message.pk]) in html

    body = {"email": "jane@example.com", "ctx": {"orderId": "A-1", "trackingUrl": "https://t.example/1"}}
    posted = api.post(
        "/geometrixx/campaign/mcgeometrixx/EVTorderShipped",
        data=json.dumps(body),
        content_type="application/json",
    )
    assert posted.status_code == 201, posted.content


def test_the_api_preview_is_a_curl_whose_body_is_valid_json_with_the_fields(
    client, administrator, cart_configuration
):
    client.force_login(administrator)
    html = client.get(change_url(cart_configuration)).content.decode()
    curl = unescape(html.split('<pre id="api-preview-curl">', 1)[1].split("</pre>", 1)[0])
    assert curl.startswith(
        "curl -X POST 'http://testserver/geometrixx/campaign/mcgeometrixx/EVTcartAbandonment'"
    )
    body = json.loads(curl.split(" -d '", 1)[1].rstrip("'"))
    assert body["email"] == "test@example.com"
    assert set(body["ctx"]) == {"firstName", "cartAmount", "lastProduct", "products"}
    fields_table = html.split("Body fields", 1)[1].split("</table>", 1)[0]
    for name in ("firstName", "cartAmount", "lastProduct", "products[].sku", "products[].price"):
        assert f"<code>{name}</code>" in fields_table


def test_a_refused_republication_says_the_changes_are_saved_but_not_published(
    client, administrator, organization
):
    configuration = publish_events(
        organization,
        {
            "name": "welcome",
            "targeting": "profile",
            "fields": [{"name": "email", "type": "email"}],
            "reconciliation": {"eventField": "email", "profileField": "email"},
            "message": {"subject": "Welcome", "html": "<p>Hi</p>", "text": "Hi"},
        },
    )[0]
    client.force_login(administrator)
    page = client.get(change_url(configuration))
    answer = client.post(
        change_url(configuration),
        change_form_data(
            page, label="Welcome aboard", reconciliation_event_field="", _publish="Save and republish"
        ),
    )
    html = client.get(answer.url).content.decode()
    assert (
        "Your changes to EVTwelcome are saved but not published: the API still enforces "
        "the published fields until a publication succeeds." in html
    )
    assert "Profile targeting needs a reconciliation" in html
    configuration.refresh_from_db()
    assert configuration.label == "Welcome aboard" and configuration.is_published


def test_publishing_a_profile_configuration_without_reconciliation_is_refused(client, administrator):
    client.force_login(administrator)
    answer = add_configuration(
        client, name="welcome", targeting="profile", fields=[("email", "email")], _publish="Save and publish"
    )
    configuration = EventConfiguration.objects.get(name="welcome")
    assert configuration.status == "draft"
    assert configuration.message is None
    html = client.get(answer.url).content.decode()
    assert "EVTwelcome is saved as a draft, not published: its endpoint does not answer." in html
    assert "Profile targeting needs a reconciliation" in html
    assert "Not deployed" in html


def test_unpublish_takes_the_endpoint_down(client, administrator, cart_configuration, api):
    client.force_login(administrator)
    answer = client.post(unpublish_url(cart_configuration))
    assert answer.status_code == 302 and answer.url == change_url(cart_configuration)
    cart_configuration.refresh_from_db()
    assert cart_configuration.status == "draft"
    assert cart_configuration.message.status == "draft"
    assert "Not deployed" in client.get(answer.url).content.decode()
    posted = api.post(
        "/geometrixx/campaign/mcgeometrixx/EVTcartAbandonment",
        data=json.dumps(seed_body()),
        content_type="application/json",
    )
    assert posted.status_code == 404


def test_unpublish_asks_first_saying_the_endpoint_goes_down_and_queued_events_fail(
    client, administrator, cart_configuration
):
    accept(cart_configuration)
    client.force_login(administrator)
    page = client.get(change_url(cart_configuration)).content.decode()
    assert f'href="{unpublish_url(cart_configuration)}"' in page and 'name="_unpublish"' not in page
    question = client.get(unpublish_url(cart_configuration))
    text = " ".join(strip_tags(question.content.decode()).split())
    assert "The REST endpoint of EVTcartAbandonment goes down" in text
    assert "The message goes back to draft" in text
    assert "1 queued event (pending or paused) will fail (routingFailed)" in text
    cart_configuration.refresh_from_db()
    assert cart_configuration.is_published  # asking changed nothing
    assert Event.objects.get().status == "pending"


def test_bulk_deleting_event_types_says_what_goes_and_refuses_one_with_events_with_a_way_back(
    client, administrator, cart_configuration
):
    accept(cart_configuration)
    unpublish_configuration(configuration=cart_configuration)
    spare = ConfigurationFactory(organization=cart_configuration.organization, name="spare")
    client.force_login(administrator)
    selection = {"action": "delete_selected", "_selected_action": [cart_configuration.pk, spare.pk]}
    refused = client.post(CHANGELIST, {**selection, "post": "yes"})
    text = " ".join(strip_tags(refused.content.decode()).split())
    assert "EVTcartAbandonment still has 1 event(s), kept for their history" in text
    assert f'href="{CHANGELIST}"' in refused.content.decode()
    assert EventConfiguration.objects.count() == 2

    question = client.post(CHANGELIST, {"action": "delete_selected", "_selected_action": [spare.pk]})
    assert "Are you sure" in question.content.decode()
    done = client.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [spare.pk], "post": "yes"}
    )
    assert done.status_code == 302 and done.url == CHANGELIST
    assert list(EventConfiguration.objects.values_list("name", flat=True)) == ["cartAbandonment"]


def test_a_published_configuration_cannot_be_deleted(client, administrator, cart_configuration):
    client.force_login(administrator)
    delete_url = reverse("admin:events_eventconfiguration_delete", args=[cart_configuration.pk])
    assert client.get(delete_url).status_code == 403
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    client.post(
        CHANGELIST,
        {"action": "delete_selected", "_selected_action": [cart_configuration.pk], "post": "yes"},
    )
    assert EventConfiguration.objects.filter(pk=cart_configuration.pk).exists()
    assert "Delete" not in client.get(change_url(cart_configuration)).content.decode().split("submit-row")[1]


def test_a_draft_configuration_can_be_deleted(client, administrator, organization):
    draft = ConfigurationFactory(organization=organization)
    client.force_login(administrator)
    answer = client.post(reverse("admin:events_eventconfiguration_delete", args=[draft.pk]), {"post": "yes"})
    assert answer.status_code == 302
    assert not EventConfiguration.objects.filter(pk=draft.pk).exists()


def test_deleting_an_unpublished_configuration_deletes_its_message_versions_and_proofs(
    client, administrator, cart_configuration
):
    message = cart_configuration.message
    Delivery.objects.create(
        organization=cart_configuration.organization, message=message, is_proof=True, channel="email",
        recipient="qa@example.com", outcome="sent",
    )  # fmt: skip
    unpublish_configuration(configuration=cart_configuration)
    client.force_login(administrator)
    delete_url = reverse("admin:events_eventconfiguration_delete", args=[cart_configuration.pk])
    assert client.post(delete_url, {"post": "yes"}).status_code == 302
    assert not EventConfiguration.objects.filter(pk=cart_configuration.pk).exists()
    assert not TransactionalMessage.objects.filter(pk=message.pk).exists()
    assert not MessageVersion.objects.exists() and not Delivery.objects.exists()


def test_channel_and_targeting_cannot_change_once_created(client, administrator, organization):
    configuration = ConfigurationFactory(organization=organization, channel="email", targeting="event")
    FieldFactory(configuration=configuration, name="orderId")
    client.force_login(administrator)
    page = client.get(change_url(configuration))
    html = page.content.decode()
    assert 'name="channel"' not in html and 'name="targeting"' not in html
    data = change_form_data(page, channel="sms", targeting="profile", label="Renamed", _save="Save")
    assert client.post(change_url(configuration), data).status_code == 302
    configuration.refresh_from_db()
    assert (configuration.channel, configuration.targeting, configuration.label) == (
        "email",
        "event",
        "Renamed",
    )


def test_a_published_configuration_keeps_its_name_so_its_endpoint_does_not_move(
    client, administrator, cart_configuration
):
    client.force_login(administrator)
    page = client.get(change_url(cart_configuration))
    assert 'name="name"' not in page.content.decode()
    client.post(change_url(cart_configuration), change_form_data(page, name="renamed", _save="Save"))
    cart_configuration.refresh_from_db()
    assert cart_configuration.name == "cartAbandonment"


def test_a_field_added_to_a_published_configuration_waits_for_the_next_publish(
    client, administrator, cart_configuration
):
    client.force_login(administrator)
    page = client.get(change_url(cart_configuration))
    data = change_form_data(page)
    new = int(data["fields-TOTAL_FORMS"]) - 1  # the page's blank extra row
    data.update({f"fields-{new}-name": "couponCode", f"fields-{new}-type": "text", "_save": "Save"})
    assert client.post(change_url(cart_configuration), data).status_code == 302
    html = client.get(change_url(cart_configuration)).content.decode()
    assert "changes that are not published yet" in html
    assert "couponCode" not in str(cart_configuration.published_schema)

    client.post(
        change_url(cart_configuration),
        change_form_data(client.get(change_url(cart_configuration)), _publish="Save and republish"),
    )
    cart_configuration.refresh_from_db()
    assert "couponCode" in [f["name"] for f in cart_configuration.published_schema["fields"]]


# --- Sending a failed event again, the event's sends and its profile ---------------------------

PROFILE_WELCOME = {
    "name": "welcome",
    "channel": "email",
    "targeting": "profile",
    "fields": [{"name": "email", "type": "email"}, {"name": "plan", "type": "text"}],
    "reconciliation": {"eventField": "email", "profileField": "email"},
    "message": {"subject": "Welcome {{ ctx.plan }}", "html": "<p>Plan {{ ctx.plan }}</p>", "text": ""},
}


def send_again_action(client, *events: Event):
    return client.post(
        EVENTS, {"action": "send_again", "_selected_action": [e.pk for e in events]}, follow=True
    )


def test_administrator_sends_a_failed_event_again_and_both_pages_link_to_each_other(
    client, administrator, cart_configuration
):
    client.force_login(administrator)
    failed, done = accept(cart_configuration), accept(cart_configuration)
    Event.objects.filter(pk=failed.pk).update(status="routingFailed")
    Event.objects.filter(pk=done.pk).update(status="processed")

    page = send_again_action(client, failed, done)

    html = " ".join(unescape(strip_tags(page.content.decode())).split())
    again = Event.objects.get(sent_again_from=failed)
    assert f"Event {failed.pkey} sent again as {again.pkey}." in html
    assert f"Event {done.pkey} is processed: only an event that ended deliveryFailed or routingFailed" in html
    assert Event.objects.count() == 3 and again.status == "pending" and again.ctx == failed.ctx
    assert Event.objects.get(pk=failed.pk).status == "routingFailed"  # its one final status, kept
    assert event_page_fields(client, failed)["Sent again"] == f"As {again.pkey} (pending)"
    assert event_page_fields(client, again)["Sent again"] == f"As a new send of {failed.pkey} (routingFailed)"
    assert event_page_fields(client, done)["Sent again"] == "-"
    assert "Recipient profile" not in event_page_fields(client, done)  # a real-time event's recipient
    assert (
        'id="send-again"'
        in client.get(reverse("admin:events_event_change", args=[failed.pk])).content.decode()
    )
    assert (
        'id="send-again"'
        not in client.get(reverse("admin:events_event_change", args=[done.pk])).content.decode()
    )

    # Same data, expiration included: one that has passed is said to end tooOld.
    Event.objects.filter(pk=failed.pk).update(expiration_at=timezone.now() - dt.timedelta(minutes=1))
    html = " ".join(unescape(strip_tags(send_again_action(client, failed).content.decode())).split())
    assert "but its expiration date has passed: it will end tooOld." in html


def test_a_marketer_is_not_offered_send_again_and_cannot_post_it(client, marketer, cart_configuration):
    client.force_login(marketer)
    failed = accept(cart_configuration)
    Event.objects.filter(pk=failed.pk).update(status="deliveryFailed")
    assert 'value="send_again"' not in client.get(EVENTS).content.decode()
    page = client.get(reverse("admin:events_event_change", args=[failed.pk])).content.decode()
    assert 'id="send-again"' not in page
    send_again_action(client, failed)
    assert Event.objects.count() == 1


def test_the_event_page_links_to_its_delivery_and_names_the_profile_it_went_to(
    client, administrator, marketer, organization, settings
):
    from events import pipeline
    from tests.factories import ProfileFactory

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    configuration = publish_events(organization, copy.deepcopy(PROFILE_WELCOME))[0]
    profile = ProfileFactory(organization=organization, email="jane@example.com")
    event = accept(configuration, email=None, ctx={"email": "jane@example.com", "plan": "gold"})
    unknown = accept(configuration, email=None, ctx={"email": "nobody@example.com", "plan": "gold"})
    assert pipeline.process(event.pk) == "processed"
    delivery = Delivery.objects.get(event_link__event=event)

    client.force_login(administrator)
    html = client.get(reverse("admin:events_event_change", args=[event.pk])).content.decode()
    assert reverse("admin:campaign_profile_change", args=[profile.pk]) in html
    assert reverse("admin:transactional_delivery_change", args=[delivery.pk]) in html
    fields = event_page_fields(client, event)
    assert fields["Recipient profile"] == "jane@example.com"
    outcome = delivery.get_outcome_display()
    assert fields["Sent as"] == f"Delivery {delivery.pk} to jane@example.com: {outcome}"
    assert event_page_fields(client, unknown)["Recipient profile"] == (
        "No profile found yet (email = nobody@example.com)"
    )

    client.force_login(marketer)  # no access to profiles: the address, not a link to a 403
    html = client.get(reverse("admin:events_event_change", args=[event.pk])).content.decode()
    assert reverse("admin:campaign_profile_change", args=[profile.pk]) not in html
    assert event_page_fields(client, event)["Recipient profile"] == "jane@example.com"
    assert client.get(reverse("admin:transactional_delivery_change", args=[delivery.pk])).status_code == 200


# --- The messages' list ------------------------------------------------------------------------

MESSAGES = reverse("admin:transactional_transactionalmessage_changelist")


def message_rows(client) -> dict[str, dict[str, str]]:
    """The messages' list as a marketer reads it: event id -> {column header: cell text}."""
    import re

    table = client.get(MESSAGES).content.decode().split('id="result_list"')[1].split("</table>")[0]
    head, body = table.split("</thead>")
    headers = [" ".join(strip_tags(h).split()) for h in re.findall(r"<th[^>]*>(.*?)</th>", head, re.S)]
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", body, re.S):
        cells = re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)
        values = dict(zip(headers, (" ".join(unescape(strip_tags(c)).split()) for c in cells), strict=True))
        rows[values["Event"]] = values
    return rows


def test_the_messages_list_says_label_channel_live_version_sends_of_the_day_and_unpublished_changes(
    client, marketer, organization, cart_configuration, django_assert_max_num_queries
):
    from events.models import HourlyRollup
    from messages import services as message_services
    from tests.conftest import CART_EVENT

    welcome = publish_events(organization, copy.deepcopy({**PROFILE_WELCOME, "label": "Welcome aboard"}))[0]
    publish_events(organization, {**copy.deepcopy(CART_EVENT), "name": "spare", "label": ""})
    message = cart_configuration.message
    message.subject = "A newer subject {{ ctx.firstName }}"
    message_services.save_draft(message=message)
    now = timezone.now().replace(minute=30)
    for configuration, hours_ago, sent in (
        (cart_configuration, 0, 3), (cart_configuration, 5, 4), (cart_configuration, 30, 100),
        (welcome, 23, 2),
    ):  # fmt: skip
        HourlyRollup.objects.create(
            organization=organization,
            configuration=configuration,
            channel="email",
            hour=(now - dt.timedelta(hours=hours_ago)).replace(minute=0, second=0, microsecond=0),
            sent=sent,
        )
    client.force_login(marketer)

    rows = message_rows(client)

    cart, welcome_row, spare_row = rows["EVTcartAbandonment"], rows["EVTwelcome"], rows["EVTspare"]
    assert (cart["Label"], cart["Channel"], cart["Live version"]) == ("Cart abandonment", "Email", "v1")
    assert (cart["Sent, last 24 h"], cart["Draft"]) == ("7", "Unpublished changes")  # not the 30 h old
    assert (welcome_row["Label"], welcome_row["Sent, last 24 h"]) == ("Welcome aboard", "2")
    assert (welcome_row["Draft"], spare_row["Label"], spare_row["Sent, last 24 h"]) == (
        "Same as the live version", "-", "0",
    )  # fmt: skip

    # One query for the page's sends, whatever the number of messages: as many with three as with six.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as three:
        client.get(MESSAGES)
    for name in ("more1", "more2", "more3"):
        publish_events(organization, {**copy.deepcopy(CART_EVENT), "name": name})
    with django_assert_max_num_queries(len(three.captured_queries)):
        assert len(message_rows(client)) == 6


# --- The event type's page: allowed values, positions, reconciliation, API preview, copies -----


def post_change(client, configuration: EventConfiguration, **changes):
    page = client.get(change_url(configuration))
    return client.post(change_url(configuration), change_form_data(page, **changes))


def test_allowed_values_are_typed_as_a_list_and_shown_as_one(client, administrator, organization):
    client.force_login(administrator)
    configuration = ConfigurationFactory(organization=organization, name="orderShipped")
    FieldFactory(configuration=configuration, name="orderId", position=0)
    FieldFactory(configuration=configuration, name="tier", position=1)
    FieldFactory(configuration=configuration, name="size", type="integer", position=2)

    html = client.get(change_url(configuration)).content.decode()
    import re

    (empty,) = re.findall(r"<input[^>]*fields-1-values[^>]*>", html)
    assert "value=" not in empty and 'placeholder="any value"' in empty  # not `[]`

    answer = post_change(
        client,
        configuration,
        **{"fields-1-values": "gold, silver ,", "fields-2-values": "38, 40", "_continue": "1"},
    )
    assert answer.status_code == 302
    assert {f.name: f.values for f in configuration.fields.all()} == {
        "orderId": [], "tier": ["gold", "silver"], "size": [38, 40],
    }  # fmt: skip
    html = client.get(change_url(configuration)).content.decode()
    assert 'name="fields-1-values" value="gold, silver"' in html
    assert 'name="fields-2-values" value="38, 40"' in html

    # A value the field's type refuses, and a value with a comma (a JSON list keeps it whole).
    errors = post_change(client, configuration, **{"fields-2-values": "38, forty"}).context[
        "inline_admin_formsets"
    ]
    assert "'forty' must be an integer." in str(errors[0].formset.errors)
    post_change(client, configuration, **{"fields-1-values": '["gold, plus", "silver"]'})
    assert configuration.fields.get(name="tier").values == ["gold, plus", "silver"]
    html = client.get(change_url(configuration)).content.decode()
    assert 'value="[&quot;gold, plus&quot;, &quot;silver&quot;]"' in html


def test_a_new_field_without_a_position_goes_after_the_last_one(client, administrator, organization):
    client.force_login(administrator)
    configuration = ConfigurationFactory(organization=organization, name="orderShipped")
    FieldFactory(configuration=configuration, name="orderId", position=0)
    FieldFactory(configuration=configuration, name="total", position=4)

    page = client.get(change_url(configuration))
    html = page.content.decode()
    assert 'name="fields-2-position" value="0"' not in html  # the new row's position is empty
    answer = post_change(
        client,
        configuration,
        **{"fields-2-name": "carrier", "fields-2-type": "text", "fields-2-position": "", "_continue": "1"},
    )
    assert answer.status_code == 302
    assert [(f.name, f.position) for f in configuration.fields.order_by("position")] == [
        ("orderId", 0), ("total", 4), ("carrier", 5),
    ]  # fmt: skip


def test_the_reconciliation_section_is_only_for_profile_targeting(client, administrator, organization):
    client.force_login(administrator)
    event_based = ConfigurationFactory(organization=organization, name="orderShipped")
    profile_based = publish_events(organization, copy.deepcopy(PROFILE_WELCOME))[0]
    assert "Reconciliation" not in client.get(change_url(event_based)).content.decode()
    html = client.get(change_url(profile_based)).content.decode()
    assert "Reconciliation (profile targeting)" in html and 'id="id_reconciliation_event_field"' in html
    # A new event type: the section is there for the page's script to show while "Profile" is chosen.
    html = client.get(ADD).content.decode()
    assert 'class="module aligned reconciliation"' in html
    assert "/static/campaign/configuration_form.js" in html


def test_the_api_preview_offers_its_curl_to_copy_and_the_events_swagger_ui_page(
    client, administrator, cart_configuration
):
    client.force_login(administrator)
    html = client.get(change_url(cart_configuration)).content.decode()
    assert 'id="copy-curl" data-copy="api-preview-curl"' in html
    assert 'href="/api/docs/#/EVTcartAbandonment/send_EVTcartAbandonment"' in html
    assert "<script>" not in html  # the copy is a static file's (the Content-Security-Policy)


def test_a_duplicated_event_type_has_a_label_of_its_own(client, administrator, cart_configuration):
    client.force_login(administrator)
    answer = client.post(
        CHANGELIST, {"action": "duplicate", "_selected_action": [cart_configuration.pk]}, follow=True
    )
    assert "EVTcartAbandonment duplicated as EVTcartAbandonmentCopy." in answer.content.decode()
    copy_ = EventConfiguration.objects.get(name="cartAbandonmentCopy")
    assert copy_.label == "Cart abandonment (copy)"
    assert "Cart abandonment (copy)" in client.get(CHANGELIST).content.decode()
