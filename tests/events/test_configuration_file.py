"""Configuration as code: the import_events / export_events file, all or nothing."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from campaign import senders
from events.configuration_file import ConfigurationFileError, export_organization, import_file
from events.models import EventConfiguration, EventField
from messages.models import MessageVersion, TransactionalMessage
from tests.conftest import CART_EVENT

pytestmark = pytest.mark.django_db

# The example of the SPEC's "Event configuration file" section, verbatim.
SPEC_EXAMPLE: dict[str, Any] = {
    "organization": "geometrixx",
    "events": [
        {
            "name": "cartAbandonment",
            "label": "Cart abandonment",
            "channel": "email",
            "targeting": "event",
            "fields": [
                {"name": "firstName", "type": "text"},
                {"name": "cartAmount", "type": "text"},
                {"name": "lastProduct", "type": "text"},
            ],
            "collections": [
                {
                    "name": "products",
                    "fields": [{"name": "sku", "type": "text"}, {"name": "price", "type": "decimal"}],
                }
            ],
            "message": {
                "subject": "{{ ctx.firstName }}, your cart is waiting",
                "html": "<p>Hello {{ ctx.firstName }}</p>{% for p in ctx.products %}<p>{{ p.sku }}</p>"
                "{% endfor %}",
                "text": "Hello {{ ctx.firstName }}",
            },
        },
        {
            "name": "welcome",
            "label": "Welcome",
            "channel": "email",
            "targeting": "profile",
            "fields": [{"name": "email", "type": "email"}, {"name": "plan", "type": "text"}],
            "reconciliation": {"eventField": "email", "profileField": "email"},
            "message": {"subject": "Welcome {{ profile.firstName }}", "html": "...", "text": "..."},
        },
    ],
}

# Everything the format can say, written the way export_events writes it (so export == this).
RICH_FILE: dict[str, Any] = {
    "organization": "geometrixx",
    "events": [
        {
            "name": "orderShipped",
            "label": "Order shipped",
            "channel": "email",
            "targeting": "event",
            "fields": [
                {
                    "name": "firstName",
                    "type": "text",
                    "label": "First name",
                    "required": True,
                    "maxLength": 40,
                },
                {"name": "tier", "type": "text", "values": ["gold", "silver"]},
                {"name": "total", "type": "decimal", "required": True},
                {"name": "items", "type": "integer"},
                {"name": "gift", "type": "boolean"},
                {"name": "shippedOn", "type": "date"},
                {"name": "eta", "type": "datetime"},
                {"name": "trackingUrl", "type": "url"},
                {"name": "AC_language", "type": "text", "values": ["en", "fr"]},
            ],
            "collections": [
                {
                    "name": "lines",
                    "fields": [
                        {"name": "sku", "type": "text", "label": "SKU", "required": True},
                        {"name": "quantity", "type": "integer"},
                        {"name": "price", "type": "decimal"},
                    ],
                }
            ],
            "message": {
                "subject": "{{ ctx.firstName }}, order shipped",
                "html": "<p>{{ ctx.total | currency('EUR') }}</p>"
                "{% for line in ctx.lines %}<p>{{ line.sku }} x {{ line.quantity }}</p>{% endfor %}",
                "text": "Total {{ ctx.total }}",
                "from": {"name": "Geometrixx shop", "address": "shop@geometrixx.example.com"},
                "replyTo": "help@geometrixx.example.com",
                "variants": {
                    "fr": {
                        "subject": "{{ ctx.firstName }}, commande expédiée",
                        "text": "Total {{ ctx.total }}",
                    }
                },
            },
        },
        {
            "name": "parcelNearby",
            "label": "Parcel nearby",
            "channel": "push",
            "targeting": "event",
            "fields": [{"name": "minutes", "type": "integer"}],
            "message": {"title": "Your parcel", "body": "Arrives in {{ ctx.minutes }} minutes"},
        },
        {
            "name": "passwordChanged",
            "label": "",
            "channel": "sms",
            "targeting": "profile",
            "fields": [{"name": "customerId", "type": "text", "required": True}],
            "reconciliation": {"eventField": "customerId", "profileField": "customerId"},
            "message": {"text": "{{ profile.firstName }}, your password changed."},
        },
        {
            "name": "zNoMessage",
            "label": "No message yet",
            "channel": "email",
            "targeting": "event",
            "fields": [],
        },
    ],
}


def sorted_export(organization) -> dict[str, Any]:
    return export_organization(organization)


def by_name(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {event["name"]: event for event in data["events"]}


def state() -> dict[str, Any]:
    """Every row an import writes, to prove that a refused import wrote nothing."""
    return {
        "configurations": sorted(
            EventConfiguration.objects.values_list("organization__slug", "name", "label", "channel", "status")
        ),
        "fields": sorted(EventField.objects.values_list("configuration__name", "collection", "name", "type")),
        "messages": sorted(
            TransactionalMessage.objects.values_list("configuration__name", "status", "subject", "html")
        ),
        "versions": MessageVersion.objects.count(),
    }


# --- The SPEC's example ------------------------------------------------------------------------


def test_spec_example_saves_both_events_and_their_messages_as_drafts(organization):
    imported = import_file(copy.deepcopy(SPEC_EXAMPLE))
    assert [c.event_id for c in imported] == ["EVTcartAbandonment", "EVTwelcome"]
    cart = EventConfiguration.objects.get(organization=organization, name="cartAbandonment")
    assert (cart.label, cart.channel, cart.targeting, cart.status) == (
        "Cart abandonment",
        "email",
        "event",
        "draft",
    )
    assert cart.published_schema is None
    assert [(f.collection, f.name, f.type) for f in cart.fields.all()] == [
        ("", "firstName", "text"),
        ("", "cartAmount", "text"),
        ("", "lastProduct", "text"),
        ("products", "sku", "text"),
        ("products", "price", "decimal"),
    ]
    assert cart.message.status == "draft" and cart.message.live_version is None
    assert cart.message.subject == "{{ ctx.firstName }}, your cart is waiting"
    welcome = EventConfiguration.objects.get(organization=organization, name="welcome")
    assert (welcome.targeting, welcome.reconciliation_event_field, welcome.reconciliation_profile_field) == (
        "profile",
        "email",
        "email",
    )
    assert welcome.message.text == "..."


def test_spec_example_with_publish_deploys_both_events_and_publishes_their_messages(organization):
    import_file(copy.deepcopy(SPEC_EXAMPLE), publish=True)
    for configuration in EventConfiguration.objects.filter(organization=organization):
        assert configuration.status == "published"
        message = configuration.message
        assert message.status == "published"
        assert message.live_version.content == message.draft_content()
    cart = EventConfiguration.objects.get(name="cartAbandonment")
    assert cart.published_schema["collections"] == [
        {
            "name": "products",
            "fields": [{"name": "sku", "type": "text"}, {"name": "price", "type": "decimal"}],
        }
    ]
    assert cart.message.live_version.content["subject"] == "{{ ctx.firstName }}, your cart is waiting"


def test_importing_the_same_file_again_with_publish_makes_no_new_version(organization):
    import_file(copy.deepcopy(SPEC_EXAMPLE), publish=True)
    import_file(copy.deepcopy(SPEC_EXAMPLE), publish=True)
    assert MessageVersion.objects.count() == 2
    assert EventConfiguration.objects.count() == 2


def test_publishing_an_event_without_a_message_in_the_file_gives_it_a_default_draft_message(organization):
    event = {"name": "bare", "fields": [{"name": "code", "type": "text"}]}
    import_file({"organization": "geometrixx", "events": [event]}, publish=True)
    message = TransactionalMessage.objects.get(configuration__name="bare")
    assert "{{ ctx.code }}" in message.html and message.status == "published"


def test_evt_prefix_in_a_name_is_accepted_and_stripped(organization):
    event = {**copy.deepcopy(CART_EVENT), "name": "EVTcartAbandonment"}
    (imported,) = import_file({"organization": "geometrixx", "events": [event]})
    assert imported.name == "cartAbandonment" and imported.event_id == "EVTcartAbandonment"
    assert by_name(export_organization(organization)).keys() == {"cartAbandonment"}


def test_a_reimport_replaces_the_fields_and_the_draft_but_keeps_the_published_schema(cart_configuration):
    frozen = cart_configuration.published_schema
    changed = copy.deepcopy(CART_EVENT)
    changed["fields"] = [{"name": "firstName", "type": "text"}, {"name": "coupon", "type": "text"}]
    changed["collections"] = []
    changed["message"] = {"subject": "Hi {{ ctx.firstName }}", "html": "{{ ctx.coupon }}", "text": "x"}
    import_file({"organization": "geometrixx", "events": [changed]})
    configuration = EventConfiguration.objects.get(pk=cart_configuration.pk)
    assert [f.name for f in configuration.fields.all()] == ["firstName", "coupon"]
    assert configuration.message.subject == "Hi {{ ctx.firstName }}"
    # Later edits of a published configuration wait for the next publication.
    assert configuration.status == "published" and configuration.published_schema == frozen
    assert (
        configuration.message.live_version.content["subject"] == "{{ ctx.firstName }}, your cart is waiting"
    )


def test_an_event_of_another_organization_with_the_same_name_is_not_touched(
    cart_configuration, other_organization
):
    event = {**copy.deepcopy(CART_EVENT), "label": "Acme's cart", "channel": "sms", "message": None}
    del event["message"]
    import_file({"organization": "acme", "events": [event]})
    assert EventConfiguration.objects.get(pk=cart_configuration.pk).label == "Cart abandonment"
    assert EventConfiguration.objects.get(organization=other_organization).channel == "sms"


# --- Round trip --------------------------------------------------------------------------------


def test_export_writes_back_exactly_what_was_imported(organization):
    import_file(copy.deepcopy(RICH_FILE))
    assert export_organization(organization) == RICH_FILE


def test_export_import_export_is_identical(organization, other_organization):
    import_file(copy.deepcopy(RICH_FILE), publish=True)
    first = export_organization(organization)
    import_file(copy.deepcopy(first), publish=True)
    assert export_organization(organization) == first
    # And into another organization (once it declares the file's sender domain): the same file, but
    # for its name.
    senders.declare_sender_domain(organization=other_organization, domain="geometrixx.example.com")
    import_file({**copy.deepcopy(first), "organization": "acme"})
    assert export_organization(other_organization) == {**first, "organization": "acme"}


def test_export_of_the_spec_example_reimports_to_the_same_export(organization):
    import_file(copy.deepcopy(SPEC_EXAMPLE))
    first = export_organization(organization)
    assert by_name(first)["welcome"]["reconciliation"] == {"eventField": "email", "profileField": "email"}
    assert "reconciliation" not in by_name(first)["cartAbandonment"]
    import_file(copy.deepcopy(first))
    assert export_organization(organization) == first


# --- Bad files: rejected whole, naming the event and the field, writing nothing ---------------

GOOD_EVENT: dict[str, Any] = {
    "name": "orderConfirmed",
    "label": "Order confirmed",
    "channel": "email",
    "targeting": "event",
    "fields": [{"name": "firstName", "type": "text"}, {"name": "orderId", "type": "text"}],
    "message": {"subject": "Order {{ ctx.orderId }}", "html": "<p>Thanks</p>", "text": "Thanks"},
}

BAD_EVENT: dict[str, Any] = {
    "name": "bad",
    "label": "Bad",
    "channel": "email",
    "targeting": "event",
    "fields": [{"name": "firstName", "type": "text"}, {"name": "total", "type": "decimal"}],
    "collections": [{"name": "products", "fields": [{"name": "sku", "type": "text"}]}],
    "message": {"subject": "Hello {{ ctx.firstName }}", "html": "<p>Hi</p>", "text": "Hi"},
}


def _set(path: str, value: Any):
    def change(event: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = event
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        if value is _DELETE:
            del target[last]
        elif last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value

    return change


_DELETE = object()

# id: (change to the second event, what the one-line message must contain besides "event bad")
BAD_EVENTS = {
    "unknown field type": (_set("fields.1.type", "money"), ["fields[1]", "total", "money"]),
    "unknown collection field type": (
        _set("collections.0.fields.0.type", "sku"),
        ["collections[0].fields[0]", "unknown type"],
    ),
    "unknown channel": (_set("channel", "fax"), ["channel", "fax"]),
    "unknown targeting": (_set("targeting", "segment"), ["targeting", "segment"]),
    "duplicate field": (_set("fields.1.name", "firstName"), ["field 'firstName' is declared twice"]),
    "duplicate collection field": (
        _set("collections.0.fields", [{"name": "sku"}, {"name": "sku"}]),
        ["field 'products.sku' is declared twice"],
    ),
    "field and collection of the same name": (_set("fields.1.name", "products"), ["products"]),
    "template that does not compile": (
        _set("message.html", "<p>Hi</p>\n{% for p in ctx.products %}<p>{{ p.sku }}</p>"),
        ["message.html", "line"],
    ),
    "template with an undeclared variable": (_set("message.subject", "Hi {{ ctx.nope }}"), ["ctx.nope"]),
    "template with an unknown collection field": (
        _set("message.html", "{% for p in ctx.products %}{{ p.colour }}{% endfor %}"),
        ["message.html", "p.colour"],
    ),
    "variant with an undeclared variable": (
        _set("message.variants", {"fr": {"subject": "{{ ctx.prenom }}"}}),
        ["message.variants.fr.subject", "ctx.prenom"],
    ),
    "variants not an object": (_set("message.variants", ["fr"]), ["message.variants"]),
    "template beyond the output cap": (
        _set("message.subject", '{{ "aaaaaaaaaa"' + '|replace("a","aaaaaaaaaa")' * 9 + " }}"),
        ["message.subject", "beyond the limit of 1,000,000 (RENDER_MAX_OUTPUT_CHARS)"],
    ),
    "variant beyond the loop budget": (
        _set("message.variants", {"fr": {"text": "{% for a in 'x' * 100000 %}{% endfor %}" * 2}}),
        ["message.variants.fr.text", "100,000 iterations (RENDER_MAX_LOOP_ITERATIONS)"],
    ),
    "profile template in an event-based message": (
        _set("message.text", "{{ profile.firstName }}"),
        ["message.text", "profile"],
    ),
    "profile targeting without reconciliation": (_set("targeting", "profile"), ["reconciliation"]),
    "reconciliation field that is not a field": (
        lambda e: e.update(
            targeting="profile", reconciliation={"eventField": "email", "profileField": "email"}
        ),
        ["reconciliation.eventField", "'email'"],
    ),
    "reconciliation on event targeting": (
        _set("reconciliation", {"eventField": "firstName", "profileField": "firstName"}),
        ["reconciliation"],
    ),
    "maxLength as text": (_set("fields.0.maxLength", "40"), ["fields[0]", "maxLength"]),
    "maxLength zero": (_set("fields.0.maxLength", 0), ["fields[0]", "maxLength"]),
    "maxLength true": (_set("fields.0.maxLength", True), ["fields[0]", "maxLength"]),
    "maxLength on a number": (_set("fields.1.maxLength", 3), ["total", "maximum length"]),
    "required as text": (_set("fields.0.required", "yes"), ["fields[0]", "required"]),
    "values not a list": (_set("fields.0.values", "gold"), ["fields[0]", "values"]),
    "values of the wrong type": (_set("fields.1.values", ["cheap"]), ["fields[1]", "values", "cheap"]),
    "event name with a space": (_set("name", "bad event"), ["bad event", "name"]),
    "event name too long for its id": (_set("name", "bad" + "x" * 59), ["longer than 64"]),
    "field name with a dash": (_set("fields.0.name", "first-name"), ["fields[0]", "first-name"]),
    "field name starting with a digit": (_set("fields.0.name", "1st"), ["fields[0]", "1st"]),
    "collection name invalid": (_set("collections.0.name", "my products"), ["collections[0]"]),
    "collection name empty": (_set("collections.0.name", ""), ["collections[0]"]),
    "unknown key in the event": (_set("colour", "red"), ["unknown key", "colour"]),
    "unknown key in a field": (_set("fields.0.format", "upper"), ["fields[0]", "format"]),
    "part the channel does not have": (
        lambda e: e.update(channel="sms", message={"subject": "Hi", "text": "Hi"}),
        ["message.subject"],
    ),
    "sender address that is not an address": (
        _set("message.from", {"name": "Shop", "address": "shop"}),
        ["message.from.address", "'shop'"],
    ),
    "reply-to that is not an address": (_set("message.replyTo", "nobody"), ["message.replyTo"]),
    "sender outside the sender domains": (
        _set("message.from", {"name": "PayPal", "address": "security@paypal.com"}),
        ["message.from.address", "'security@paypal.com' is not in the organization's sender domains"],
    ),
    "sender in a subdomain of a sender domain": (
        _set("message.from", {"name": "Shop", "address": "shop@mail.example.com"}),
        ["message.from.address", "'shop@mail.example.com' is not in"],
    ),
    "reply-to outside the sender domains": (
        _set("message.replyTo", "help@elsewhere.example"),
        ["message.replyTo", "'help@elsewhere.example' is not in the organization's sender domains"],
    ),
    "label too long": (_set("label", "x" * 201), ["label"]),
    "fields not a list": (_set("fields", {"firstName": "text"}), ["fields"]),
    "message not an object": (_set("message", "Hello"), ["message"]),
}


@pytest.fixture
def existing(cart_configuration):
    """An organization that already has a published event, so that 'nothing written' means something."""
    return cart_configuration


def bad_file(change) -> dict[str, Any]:
    bad = copy.deepcopy(BAD_EVENT)
    change(bad)
    updated_cart = {**copy.deepcopy(CART_EVENT), "label": "Changed by the refused file"}
    return {"organization": "geometrixx", "events": [updated_cart, copy.deepcopy(GOOD_EVENT), bad]}


@pytest.mark.parametrize("publish", [False, True], ids=["save", "publish"])
@pytest.mark.parametrize("case", sorted(BAD_EVENTS))
def test_a_bad_event_rejects_the_whole_file_naming_the_event_and_the_field(existing, case, publish):
    change, expected = BAD_EVENTS[case]
    before = state()
    with pytest.raises(ConfigurationFileError) as refused:
        import_file(bad_file(change), publish=publish)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("event bad"), message
    for fragment in expected:
        assert fragment in message, message
    assert state() == before
    assert EventConfiguration.objects.get(pk=existing.pk).label == "Cart abandonment"


def test_a_name_declared_twice_in_the_file_rejects_it(existing):
    before = state()
    twice = {**copy.deepcopy(GOOD_EVENT), "name": "EVTorderConfirmed"}
    with pytest.raises(ConfigurationFileError, match="event orderConfirmed: declared twice"):
        import_file({"organization": "geometrixx", "events": [copy.deepcopy(GOOD_EVENT), twice]})
    assert state() == before


def test_changing_the_channel_of_an_existing_event_is_refused(existing):
    before = state()
    as_sms = {**copy.deepcopy(CART_EVENT), "channel": "sms", "message": {"text": "Hi"}}
    with pytest.raises(ConfigurationFileError, match="event cartAbandonment: channel and targeting"):
        import_file({"organization": "geometrixx", "events": [copy.deepcopy(GOOD_EVENT), as_sms]})
    assert state() == before
    assert EventConfiguration.objects.get(pk=existing.pk).channel == "email"


def test_changing_the_targeting_of_an_existing_event_is_refused(existing):
    as_profile = {
        **copy.deepcopy(CART_EVENT),
        "targeting": "profile",
        "reconciliation": {"eventField": "firstName", "profileField": "firstName"},
    }
    with pytest.raises(ConfigurationFileError, match="cannot change"):
        import_file({"organization": "geometrixx", "events": [as_profile]})
    assert EventConfiguration.objects.get(pk=existing.pk).targeting == "event"


def test_a_message_that_cannot_be_published_rolls_back_the_events_before_it(existing):
    """Checks pass, the first events are written, then publishing the last one fails: all undone."""
    before = state()
    no_subject = {**copy.deepcopy(GOOD_EVENT), "name": "bad", "message": {"html": "<p>Hi</p>"}}
    with pytest.raises(ConfigurationFileError) as refused:
        import_file(bad_file(lambda e: e.update(no_subject)), publish=True)
    assert str(refused.value) == "event bad: The message needs a subject."
    assert state() == before
    # Without --publish the same draft is fine: a marketer will write the subject.
    import_file(bad_file(lambda e: e.update(no_subject)))
    assert TransactionalMessage.objects.get(configuration__name="bad").status == "draft"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([SPEC_EXAMPLE], "file: the file is a JSON object"),
        ("geometrixx", "file: the file is a JSON object"),
        ({"events": []}, "organization: the file must name its organization"),
        ({"organization": "nobody", "events": [GOOD_EVENT]}, "organization: no organization 'nobody'"),
        ({"organization": "geometrixx", "events": {"name": "x"}}, "events: a list of events"),
        ({"organization": "geometrixx", "events": [GOOD_EVENT, "bad"]}, "events[1]: an event is an object"),
        ({"organization": "geometrixx", "events": [{"label": "no name"}]}, "event #1: name"),
        ({"organization": "geometrixx", "events": [], "version": 2}, "file: unknown key(s) version"),
    ],
)
def test_a_file_of_the_wrong_shape_is_rejected(existing, data, expected):
    before = state()
    with pytest.raises(ConfigurationFileError) as refused:
        import_file(copy.deepcopy(data))
    assert str(refused.value).startswith(expected)
    assert state() == before
