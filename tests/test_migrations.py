"""Upgrading keeps the data: a database filled by the previous release (commit 7c29340) migrates to
this one, and what it held still works: its credential authenticates, its event answers on the API,
its published event takes new events that go out with its message, its unsubscribe links work."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail, signing
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from rest_framework.test import APIClient

from campaign import services as campaign_services
from campaign.models import ApiCredential, Organization, Profile, Quarantine, hash_secret
from events import pipeline
from events.models import Event, EventConfiguration
from events.selectors import QuarantineLookup
from messages.models import Delivery, MessageVersion, SmsReceipt, TransactionalMessage

# The leaf migration of each of our apps in the previous release (`git show 7c29340 --stat`).
PREVIOUS_RELEASE = [
    ("campaign", "0002_roles"),
    ("events", "0003_configuration_unpublished_with_message"),
    ("transactional", "0001_initial"),
]
SECRET = "previous-release-client-secret-0123456789abcdefghijklmnop"
# What the previous release's publication stored (taken from its code): the frozen schema and content.
SCHEMA = {
    "eventId": "EVTcartAbandonment",
    "channel": "email",
    "targeting": "event",
    "fields": [
        {"name": "firstName", "type": "text", "required": True, "maxLength": 50},
        {"name": "lastProduct", "type": "text"},
    ],
    "collections": [
        {
            "name": "products",
            "fields": [{"name": "sku", "type": "text"}, {"name": "price", "type": "decimal"}],
        }
    ],
}
CONTENT = {
    "subject": "{{ ctx.firstName }}, your cart is waiting",
    "html": "<p>Hello {{ ctx.firstName }}</p>{% for p in ctx.products %}<p>{{ p.sku }}</p>{% endfor %}",
    "text": "Hello {{ ctx.firstName }}, you left {{ ctx.lastProduct }}.",
    "from": {"name": "Geometrixx", "address": "shop@geometrixx.example"},
}
URL = "/geometrixx/campaign/mcgeometrixx/EVTcartAbandonment"


def fill_as_the_previous_release(apps) -> dict[str, object]:
    """Rows of every kind, written with the previous release's models (its historical state)."""
    now = timezone.now()
    organization = apps.get_model("campaign", "Organization").objects.create(
        slug="geometrixx",
        name="Geometrixx",
        sender_name="Geometrixx",
        sender_address="shop@geometrixx.example",
    )
    credential = apps.get_model("campaign", "ApiCredential").objects.create(
        organization=organization, name="shop", secret_hash=hash_secret(SECRET)
    )
    profile = apps.get_model("campaign", "Profile").objects.create(
        organization=organization, email="jane@example.com", first_name="Jane", language="fr"
    )
    configuration = apps.get_model("events", "EventConfiguration").objects.create(
        organization=organization,
        name="cartAbandonment",
        label="Cart abandonment",
        status="published",
        published_schema=SCHEMA,
        published_at=now,
    )
    Field = apps.get_model("events", "EventField")
    for position, field in enumerate(SCHEMA["fields"]):
        Field.objects.create(
            configuration=configuration,
            name=field["name"],
            required=field.get("required", False),
            max_length=field.get("maxLength"),
            position=position,
        )
    for position, field in enumerate(SCHEMA["collections"][0]["fields"]):
        Field.objects.create(
            configuration=configuration,
            collection="products",
            name=field["name"],
            type=field["type"],
            position=position,
        )
    Message = apps.get_model("transactional", "TransactionalMessage")
    message = Message.objects.create(
        configuration=configuration,
        subject=CONTENT["subject"],
        html=CONTENT["html"],
        text=CONTENT["text"],
        from_name="Geometrixx",
        from_address="shop@geometrixx.example",
    )
    version = apps.get_model("transactional", "MessageVersion").objects.create(
        message=message, number=1, content=CONTENT
    )
    Message.objects.filter(pk=message.pk).update(status="published", live_version=version)
    event = apps.get_model("events", "Event").objects.create(
        organization=organization,
        configuration=configuration,
        email="jack@example.com",
        ctx={"firstName": "Jack", "lastProduct": "Leather motorbike jacket"},
        status="processed",
        attempts=1,
        next_attempt_at=now - dt.timedelta(minutes=5),
        processed_at=now - dt.timedelta(minutes=4),
        message_version=version,
        idempotency_key="order-1",
    )
    apps.get_model("events", "EventStatusChange").objects.create(
        event=event, from_status="pending", to_status="processed"
    )
    apps.get_model("transactional", "Delivery").objects.create(
        organization=organization,
        message=message,
        version=version,
        event=event,
        channel="email",
        recipient="jack@example.com",
        outcome="sent",
        provider_message_id="<1@geometrixx.example>",
        duration_ms=12,
    )
    return {"api_key": credential.api_key, "pkey": event.pkey, "profile": profile.pk}


@pytest.mark.django_db(transaction=True)
def test_a_database_of_the_previous_release_migrates_with_its_data_usable(client):
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(PREVIOUS_RELEASE)
    try:
        executor.loader.build_graph()
        assert "campaign_failurewindow" not in connection.introspection.table_names()  # the old schema
        before = fill_as_the_previous_release(executor.loader.project_state(PREVIOUS_RELEASE).apps)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)

    organization = Organization.objects.get(slug="geometrixx")
    assert ApiCredential.objects.get(api_key=before["api_key"]).organization == organization
    old_event = Event.objects.get(pkey=before["pkey"])
    assert old_event.status == "processed" and old_event.message_version.number == 1
    assert old_event.deliveries.get().provider_message_id == "<1@geometrixx.example>"

    # The credential still authenticates, and the old event answers on the API.
    token = campaign_services.issue_access_token(api_key=before["api_key"], client_secret=SECRET)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token.access_token}", HTTP_X_API_KEY=before["api_key"])
    answer = api.get(f"{URL}/{before['pkey']}")
    assert answer.status_code == 200 and answer.json()["status"] == "processed"
    assert answer.json()["ctx"]["firstName"] == "Jack"

    # The published event takes a new event, which goes out with the previous release's version.
    posted = api.post(
        URL, {"email": "ada@example.com", "ctx": {"firstName": "Ada", "lastProduct": "Helmet"}}, format="json"
    )
    assert posted.status_code == 201, posted.json()
    new_event = Event.objects.get(pkey=posted.json()["PKey"])
    assert pipeline.process(new_event.pk) == "processed"
    (sent,) = mail.outbox
    assert sent.subject == "Ada, your cart is waiting" and "you left Helmet" in sent.body
    new_event.refresh_from_db()
    assert new_event.message_version == MessageVersion.objects.get(number=1)
    assert EventConfiguration.objects.get(name="cartAbandonment").is_published

    # An unsubscribe link sent by the previous release still opts its profile out.
    link = signing.dumps(
        {"p": before["profile"], "o": organization.pk}, salt="messages.unsubscribe", compress=True
    )
    assert client.post(f"/u/{link}").status_code == 200
    assert Profile.objects.get(pk=before["profile"]).opted_out


# Before issue 12 moved the relations between events and messages into the events app.
BEFORE_RELATIONS_MOVED = [
    ("events", "0004_status_history"),
    ("transactional", "0002_status_history"),
]


def fill_with_messages_pointing_up(apps) -> dict[str, int]:
    """A configuration with its message, one without, an event sent twice and a proof, as they were
    stored when messages pointed at events (`message.configuration_id`, `delivery.event_id`)."""
    organization = apps.get_model("campaign", "Organization").objects.create(slug="acme", name="Acme")
    Configuration = apps.get_model("events", "EventConfiguration")
    configuration = Configuration.objects.create(organization=organization, name="otp", channel="sms")
    bare = Configuration.objects.create(organization=organization, name="bare")
    message = apps.get_model("transactional", "TransactionalMessage").objects.create(
        configuration=configuration, text="Your code: {{ ctx.code }}"
    )
    event = apps.get_model("events", "Event").objects.create(
        organization=organization,
        configuration=configuration,
        mobile_phone="+33600000000",
        status="processed",
        attempts=2,
        next_attempt_at=timezone.now(),
    )
    Delivery = apps.get_model("transactional", "Delivery")
    common = {"organization": organization, "message": message, "channel": "sms", "recipient": "+33600000000"}
    first = Delivery.objects.create(event=event, outcome="temporaryFailure", **common)
    second = Delivery.objects.create(event=event, outcome="sent", **common)
    proof = Delivery.objects.create(is_proof=True, outcome="sent", **common)
    return {
        "configuration": configuration.pk,
        "bare": bare.pk,
        "message": message.pk,
        "event": event.pk,
        "first": first.pk,
        "second": second.pk,
        "proof": proof.pk,
    }


@pytest.mark.django_db(transaction=True)
def test_moving_the_relations_into_the_events_app_keeps_them_both_ways():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(BEFORE_RELATIONS_MOVED)
    try:
        executor.loader.build_graph()
        ids = fill_with_messages_pointing_up(executor.loader.project_state(BEFORE_RELATIONS_MOVED).apps)
        executor = MigrationExecutor(connection)
        executor.migrate(latest)

        # Forward: the configuration declares its message, the event its deliveries; the proof has none.
        configuration = EventConfiguration.objects.get(pk=ids["configuration"])
        message = TransactionalMessage.objects.get(pk=ids["message"])
        assert configuration.message == message and message.configuration == configuration
        assert message.channel == "sms"  # copied from its configuration
        assert EventConfiguration.objects.get(pk=ids["bare"]).message is None
        event = Event.objects.get(pk=ids["event"])
        assert sorted(event.deliveries.values_list("pk", "outcome")) == [
            (ids["first"], "temporaryFailure"),
            (ids["second"], "sent"),
        ]
        assert not Delivery.objects.get(pk=ids["proof"]).events.exists()
        assert TransactionalMessage.objects.filter(configuration__organization__slug="acme").get() == message

        # Backward: the old columns come back filled.
        executor = MigrationExecutor(connection)
        executor.migrate(BEFORE_RELATIONS_MOVED)
        executor.loader.build_graph()
        old = executor.loader.project_state(BEFORE_RELATIONS_MOVED).apps
        assert (
            old.get_model("transactional", "TransactionalMessage")
            .objects.get(pk=ids["message"])
            .configuration_id
            == ids["configuration"]
        )
        deliveries = old.get_model("transactional", "Delivery").objects.order_by("pk")
        assert list(deliveries.values_list("pk", "event_id")) == [
            (ids["first"], ids["event"]),
            (ids["second"], ids["event"]),
            (ids["proof"], None),
        ]
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)


# Before issue 16 made the profile's opt-out one flag per channel and added typologies.
BEFORE_CHANNEL_OPT_OUTS = [
    ("campaign", "0007_organization_time_zone"),
    ("events", "0010_event_sent_again_from"),
]


@pytest.mark.django_db(transaction=True)
def test_a_single_opt_out_becomes_one_of_every_channel_and_organizations_get_a_default_typology():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(BEFORE_CHANNEL_OPT_OUTS)
    try:
        executor.loader.build_graph()
        apps = executor.loader.project_state(BEFORE_CHANNEL_OPT_OUTS).apps
        organization = apps.get_model("campaign", "Organization").objects.create(slug="acme", name="Acme")
        Profile_ = apps.get_model("campaign", "Profile")
        out = Profile_.objects.create(organization=organization, email="out@example.com", opted_out=True)
        stays = Profile_.objects.create(organization=organization, email="in@example.com")
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
    flags = ("opted_out_email", "opted_out_sms", "opted_out_push")
    assert Profile.objects.filter(pk=out.pk).values_list(*flags).get() == (True, True, True)
    assert Profile.objects.filter(pk=stays.pk).values_list(*flags).get() == (False, False, False)
    from events.models import Typology

    assert Typology.objects.get(organization_id=organization.pk).is_default


BEFORE_QUARANTINE_DIGESTS = [("campaign", "0010_organization_sms_sender")]


@pytest.mark.django_db(transaction=True)
def test_quarantined_addresses_keep_being_found_and_entries_differing_in_case_become_one():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(BEFORE_QUARANTINE_DIGESTS)
    try:
        executor.loader.build_graph()
        apps = executor.loader.project_state(BEFORE_QUARANTINE_DIGESTS).apps
        organization = apps.get_model("campaign", "Organization").objects.create(slug="acme", name="Acme")
        Quarantine_ = apps.get_model("campaign", "Quarantine")
        for address in ("bounced@example.com", "Bounced@Example.com", "+33612345678"):
            Quarantine_.objects.create(organization=organization, channel="email", address=address)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
    assert sorted(Quarantine.objects.values_list("address", flat=True)) == [
        "+33612345678",
        "bounced@example.com",
    ]
    found = QuarantineLookup()
    assert found(organization_id=organization.pk, channel="email", address="BOUNCED@example.com")
    assert not found(organization_id=organization.pk, channel="email", address="other@example.com")


BEFORE_SMS_RECEIPTS_UNIQUE = [("transactional", "0014_provider_events")]


@pytest.mark.django_db(transaction=True)
def test_duplicate_sms_receipts_become_one_that_keeps_the_delivery_a_copy_found():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(BEFORE_SMS_RECEIPTS_UNIQUE)
    try:
        executor.loader.build_graph()
        apps = executor.loader.project_state(BEFORE_SMS_RECEIPTS_UNIQUE).apps
        organization = apps.get_model("campaign", "Organization").objects.create(slug="acme", name="Acme")
        message = apps.get_model("transactional", "TransactionalMessage").objects.create(channel="sms")
        delivery = apps.get_model("transactional", "Delivery").objects.create(
            organization=organization, message=message, channel="sms", recipient="+33612345678"
        )
        Receipt = apps.get_model("transactional", "SmsReceipt")
        same = {"provider": "smpp", "message_id": "m1", "status": "DELIVRD", "error_code": "000"}
        first = Receipt.objects.create(**same, raw="first")
        Receipt.objects.create(**same, raw="copy", delivery=delivery)
        Receipt.objects.create(**same, raw="copy again")
        other = Receipt.objects.create(**{**same, "status": "UNDELIV"})
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
    assert sorted(SmsReceipt.objects.values_list("pk", "raw", "delivery_id")) == [
        (first.pk, "first", delivery.pk),
        (other.pk, "", None),
    ]


BEFORE_PROVIDER_DATA_PER_ORGANIZATION = [("transactional", "0016_organization_providers")]


@pytest.mark.django_db(transaction=True)
def test_sms_receipts_take_their_deliverys_organization_and_repeats_are_still_kept_once():
    from messages import sms_replies

    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(BEFORE_PROVIDER_DATA_PER_ORGANIZATION)
    try:
        executor.loader.build_graph()
        apps = executor.loader.project_state(BEFORE_PROVIDER_DATA_PER_ORGANIZATION).apps
        organization = apps.get_model("campaign", "Organization").objects.create(slug="acme", name="Acme")
        message = apps.get_model("transactional", "TransactionalMessage").objects.create(channel="sms")
        delivery = apps.get_model("transactional", "Delivery").objects.create(
            organization=organization,
            message=message,
            channel="sms",
            recipient="+33612345678",
            provider_message_id="m1",
        )
        Receipt = apps.get_model("transactional", "SmsReceipt")
        joined = Receipt.objects.create(provider="smpp", message_id="m1", status="DELIVRD", delivery=delivery)
        early = Receipt.objects.create(provider="twilio", message_id="SM2", status="sent")
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
    assert sorted(SmsReceipt.objects.values_list("pk", "organization_id")) == [
        (joined.pk, organization.pk),
        (early.pk, None),
    ]
    assert sms_replies.record_receipt(provider="smpp", message_id="m1", status="DELIVRD").pk == joined.pk
    assert sms_replies.record_receipt(provider="twilio", message_id="SM2", status="sent").pk == early.pk
    assert SmsReceipt.objects.count() == 2
