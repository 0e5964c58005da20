"""Publication rules of event configurations: publish, republish, unpublish, duplicate, names."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from django.utils import timezone

from events import publication
from events.models import Event, EventConfiguration, EventStatusChange
from events.publication import publish_configuration, unpublish_configuration
from events.schema import SchemaError, validate_event
from events.selectors import published_configuration
from events.services import (
    configuration_errors,
    duplicate_configuration,
    event_name_errors,
    normalise_event_name,
)
from messages.lifecycle import PublicationError
from messages.models import TransactionalMessage
from tests.conftest import CART_EVENT, seed_body
from tests.factories import ConfigurationFactory, FieldFactory

pytestmark = pytest.mark.django_db
FUTURE = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.000Z")


def new_event(configuration, status: str) -> Event:
    event = Event.objects.create(
        organization_id=configuration.organization_id,
        configuration=configuration,
        email="jack@example.com",
        ctx={"firstName": "Jack"},
        next_attempt_at=timezone.now(),
    )
    Event.objects.filter(pk=event.pk).update(status=status)
    return event


@pytest.fixture
def draft(organization):
    configuration = ConfigurationFactory(
        organization=organization, name="orderShipped", label="Order shipped"
    )
    FieldFactory(configuration=configuration, name="orderId", position=0)
    FieldFactory(configuration=configuration, name="total", type="decimal", position=1)
    FieldFactory(configuration=configuration, collection="lines", name="sku", position=0)
    return configuration


# --- Publish -----------------------------------------------------------------------------------


def test_publish_freezes_the_schema_that_the_api_enforces(draft):
    configuration = publish_configuration(configuration=draft)
    assert configuration.status == "published" and configuration.published_at is not None
    frozen = configuration.published_schema
    assert frozen["eventId"] == "EVTorderShipped"
    assert [f["name"] for f in frozen["fields"]] == ["orderId", "total"]
    assert frozen["collections"] == [{"name": "lines", "fields": [{"name": "sku", "type": "text"}]}]
    assert (
        published_configuration(organization_id=draft.organization_id, event_id="EVTorderShipped") is not None
    )

    # A later edit waits for the next publication: the API still refuses the new field.
    FieldFactory(configuration=draft, name="coupon", position=2)
    body = {"email": "a@example.com", "ctx": {"coupon": "X"}}
    with pytest.raises(SchemaError) as refused:
        validate_event(EventConfiguration.objects.get(pk=draft.pk).published_schema, body)
    assert refused.value.field == "ctx.coupon"
    republished = publish_configuration(configuration=draft)
    assert validate_event(republished.published_schema, body).ctx == {"coupon": "X"}


def test_publish_creates_a_draft_message_whose_default_content_lists_the_fields(draft):
    publish_configuration(configuration=draft)
    message = TransactionalMessage.objects.get(configuration=draft)
    assert message.status == "draft" and message.live_version is None
    assert message.subject == "EVTorderShipped"
    for part in (message.html, message.text):
        assert "{{ ctx.orderId }}" in part and "{{ ctx.total }}" in part
        assert "{% for item in ctx.lines %}" in part and "{{ item.sku }}" in part
    # The default content is a valid message: it publishes as it stands.
    version = publication.publish_message(message=message)
    assert version.number == 1


@pytest.mark.parametrize(
    ("channel", "parts"),
    [("sms", {"text": "{{ ctx.code }}"}), ("push", {"title": "EVTcodeSent", "body": "{{ ctx.code }}"})],
)
def test_the_default_message_of_sms_and_push_uses_their_parts(organization, channel, parts):
    configuration = ConfigurationFactory(organization=organization, name="codeSent", channel=channel)
    FieldFactory(configuration=configuration, name="code")
    publish_configuration(configuration=configuration)
    message = TransactionalMessage.objects.get(configuration=configuration)
    assert {key: getattr(message, key) for key in parts} == parts


def test_republishing_keeps_the_existing_message_and_its_edits(cart_configuration):
    message = cart_configuration.message
    TransactionalMessage.objects.filter(pk=message.pk).update(subject="Edited by the marketer")
    publish_configuration(configuration=cart_configuration)
    assert TransactionalMessage.objects.filter(configuration=cart_configuration).count() == 1
    kept = TransactionalMessage.objects.get(configuration=cart_configuration)
    assert kept.pk == message.pk and kept.subject == "Edited by the marketer"
    assert kept.status == "published" and kept.live_version_id == message.live_version_id


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"targeting": "profile"}, "Profile targeting needs a reconciliation"),
        (
            {
                "targeting": "profile",
                "reconciliation_event_field": "email",
                "reconciliation_profile_field": "email",
            },
            "The reconciliation field 'email' is not a field of the event",
        ),
        ({"reconciliation_event_field": "orderId"}, "A reconciliation is only for profile targeting"),
    ],
)
def test_publish_refuses_a_configuration_that_breaks_the_rules(draft, change, expected):
    EventConfiguration.objects.filter(pk=draft.pk).update(**change)
    with pytest.raises(PublicationError) as refused:
        publish_configuration(configuration=draft)
    assert any(expected in error for error in refused.value.errors), refused.value.errors
    configuration = EventConfiguration.objects.get(pk=draft.pk)
    assert configuration.status == "draft" and configuration.published_schema is None
    assert not TransactionalMessage.objects.filter(configuration=draft).exists()


def test_a_name_too_long_for_its_event_id_cannot_be_published(organization):
    # The column holds 61 characters (64 minus "EVT"); the rule is checked before any write.
    unsaved = EventConfiguration(organization=organization, name="x" * 62)
    assert any("longer than 64 characters" in error for error in configuration_errors(unsaved, fields=[]))


def test_a_field_with_a_reserved_or_clashing_name_cannot_be_published(draft):
    FieldFactory(configuration=draft, name="lines", position=5)
    FieldFactory(configuration=draft, name="loop", position=6)
    errors = configuration_errors(draft)
    assert "'lines' is both a field and a collection." in errors
    assert "'loop' is a reserved name." in errors


# --- Unpublish ---------------------------------------------------------------------------------


def test_unpublish_takes_the_endpoint_down_returns_the_message_to_draft_and_fails_waiting_events(
    cart_configuration,
):
    pending = new_event(cart_configuration, "pending")
    paused = new_event(cart_configuration, "paused")
    processing = new_event(cart_configuration, "processing")
    processed = new_event(cart_configuration, "processed")

    unpublish_configuration(configuration=cart_configuration)

    configuration = EventConfiguration.objects.get(pk=cart_configuration.pk)
    assert configuration.status == "draft"
    assert (
        published_configuration(organization_id=configuration.organization_id, event_id="EVTcartAbandonment")
        is None
    )
    assert TransactionalMessage.objects.get(configuration=configuration).status == "draft"
    statuses = dict(Event.objects.values_list("pk", "status"))
    assert statuses == {
        pending.pk: "routingFailed",
        paused.pk: "routingFailed",
        processing.pk: "processing",  # a worker holds it; it finds no live message and routes it itself
        processed.pk: "processed",
    }
    changes = list(EventStatusChange.objects.values_list("event_id", "from_status", "to_status", "reason"))
    assert sorted(changes) == sorted(
        [
            (pending.pk, "pending", "routingFailed", "the event type was unpublished"),
            (paused.pk, "paused", "routingFailed", "the event type was unpublished"),
        ]
    )


def test_unpublishing_the_message_unpublishes_the_event_type_too(cart_configuration):
    pending = new_event(cart_configuration, "pending")
    publication.unpublish_message(message=cart_configuration.message)
    assert EventConfiguration.objects.get(pk=cart_configuration.pk).status == "draft"
    change = EventStatusChange.objects.get(event=pending)
    assert (change.to_status, change.reason) == ("routingFailed", "the message was unpublished")


def test_an_unpublished_event_type_can_be_published_again_with_its_message(cart_configuration):
    unpublish_configuration(configuration=cart_configuration)
    publish_configuration(configuration=cart_configuration)
    message = TransactionalMessage.objects.get(configuration=cart_configuration)
    assert message.status == "draft"  # the marketer publishes the message again
    publication.publish_message(message=message)
    body = seed_body(scheduled=None, expiration=FUTURE)
    assert validate_event(EventConfiguration.objects.get(pk=cart_configuration.pk).published_schema, body)


# --- Duplicate ---------------------------------------------------------------------------------


def test_duplicate_copies_configuration_and_message_as_drafts_under_a_free_name(cart_configuration):
    message = cart_configuration.message
    TransactionalMessage.objects.filter(pk=message.pk).update(
        from_name="Shop", from_address="shop@example.com", reply_to="help@example.com", variants={"fr": {}}
    )
    first = duplicate_configuration(configuration=cart_configuration)
    second = duplicate_configuration(configuration=cart_configuration)
    assert (first.name, second.name) == ("cartAbandonmentCopy", "cartAbandonmentCopy2")
    assert (first.label, second.label) == ("Cart abandonment (copy)", "Cart abandonment (copy 2)")
    for copy_ in (first, second):
        assert copy_.status == "draft" and copy_.published_schema is None
        assert (copy_.channel, copy_.targeting) == ("email", "event")
        assert [(f.collection, f.name, f.type) for f in copy_.fields.all()] == [
            (f.collection, f.name, f.type) for f in cart_configuration.fields.all()
        ]
        copied = TransactionalMessage.objects.get(configuration=copy_)
        assert copied.status == "draft" and copied.live_version is None
        original = TransactionalMessage.objects.get(pk=message.pk)
        assert copied.draft_content() == original.draft_content()
    # The original is untouched and still live.
    original = EventConfiguration.objects.get(pk=cart_configuration.pk)
    assert original.status == "published" and original.message.status == "published"


def test_duplicate_takes_the_name_it_is_given(cart_configuration):
    copy_ = duplicate_configuration(configuration=cart_configuration, name="cartReminder")
    assert copy_.event_id == "EVTcartReminder" and copy_.label == "Cart abandonment (copy)"


def test_duplicate_of_a_configuration_without_message_copies_no_message(draft):
    copy_ = duplicate_configuration(configuration=draft)
    assert not TransactionalMessage.objects.filter(configuration=copy_).exists()
    assert [f.name for f in copy_.fields.all()] == [f.name for f in draft.fields.all()]


def test_duplicate_of_a_long_name_stays_within_the_event_id_limit(organization):
    long_name = "a" * 61
    source = EventConfiguration.objects.create(organization=organization, name=long_name)
    first = duplicate_configuration(configuration=source)
    second = duplicate_configuration(configuration=source)
    assert len({long_name, first.name, second.name}) == 3
    for copy_ in (first, second):
        assert len(copy_.event_id) <= 64 and event_name_errors(copy_.name) == []
    assert first.name.endswith("Copy") and second.name.endswith("Copy2")
    assert (first.label, second.label) == (f"EVT{long_name} (copy)", f"EVT{long_name} (copy 2)")


# --- Names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "name"),
    [
        ("EVTcartAbandonment", "cartAbandonment"),
        ("cartAbandonment", "cartAbandonment"),
        ("  EVTcartAbandonment ", "cartAbandonment"),
        ("EVT", "EVT"),  # the prefix alone is a name, not an empty one
        ("evtCart", "evtCart"),  # the prefix is case-sensitive, as in event ids
        ("", ""),
    ],
)
def test_event_names_are_normalised_without_their_evt_prefix(typed, name):
    assert normalise_event_name(typed) == name


def test_the_event_id_is_at_most_64_characters():
    assert event_name_errors("a" * 61) == []
    (error,) = event_name_errors("a" * 62)
    assert "longer than 64 characters" in error


@pytest.mark.parametrize("name", ["", "cart abandonment", "1cart", "_cart", "cart-abandonment", "panier_é"])
def test_invalid_event_names_are_refused(name):
    assert event_name_errors(name)


def test_the_example_file_event_names_are_valid():
    assert event_name_errors(copy.deepcopy(CART_EVENT)["name"]) == []


# --- Sending a failed event again --------------------------------------------------------------


def test_a_failed_event_sent_again_is_a_new_pending_event_with_its_data_linked_to_it(
    cart_configuration, django_capture_on_commit_callbacks, monkeypatch
):
    from events import services

    enqueued: list[list[int]] = []
    monkeypatch.setattr(services, "enqueue_events", enqueued.append)
    body = seed_body(scheduled=None, expiration=(timezone.now() + dt.timedelta(days=2)).isoformat())
    failed, _ = services.ingest(
        configuration=cart_configuration, validated=validate_event(cart_configuration.published_schema, body)
    )
    Event.objects.filter(pk=failed.pk).update(status=Event.Status.DELIVERY_FAILED, last_error="550 no")
    failed.refresh_from_db()
    enqueued.clear()

    with django_capture_on_commit_callbacks(execute=True):
        again = services.send_again(event=failed)

    again.refresh_from_db()
    failed.refresh_from_db()
    assert again.pkey != failed.pkey and again.status == Event.Status.PENDING
    assert (again.ctx, again.email, again.expiration_at) == (failed.ctx, failed.email, failed.expiration_at)
    assert again.sent_again_from == failed and list(failed.sent_again_as.all()) == [again]
    assert failed.status == Event.Status.DELIVERY_FAILED and failed.last_error == "550 no"
    # Stored as an accepted POST is: undispatched, for the dispatcher to hand out.
    assert enqueued == [] and again.enqueued_at is None


def test_a_failed_event_of_an_unpublished_event_type_is_not_sent_again(cart_configuration):
    from events import services

    body = seed_body(scheduled=None, expiration=None)
    failed, _ = services.ingest(
        configuration=cart_configuration, validated=validate_event(cart_configuration.published_schema, body)
    )
    Event.objects.filter(pk=failed.pk).update(status=Event.Status.ROUTING_FAILED)
    failed.refresh_from_db()
    unpublish_configuration(configuration=cart_configuration)
    failed.refresh_from_db()
    with pytest.raises(services.CannotSendAgain, match="is not published"):
        services.send_again(event=failed)
    assert Event.objects.count() == 1


@pytest.mark.parametrize("status", ["processed", "pending", "ignored", "tooOld", "targetingFailed"])
def test_only_an_event_that_failed_delivery_or_routing_is_sent_again(cart_configuration, status):
    from events import services

    body = seed_body(scheduled=None, expiration=None)
    event, _ = services.ingest(
        configuration=cart_configuration, validated=validate_event(cart_configuration.published_schema, body)
    )
    Event.objects.filter(pk=event.pk).update(status=status)
    event.refresh_from_db()
    with pytest.raises(services.CannotSendAgain, match="only an event that ended deliveryFailed"):
        services.send_again(event=event)
    assert Event.objects.count() == 1


# --- Ingest ------------------------------------------------------------------------------------


def test_ingest_stores_nothing_once_the_configuration_read_is_no_longer_published_so(cart_configuration):
    from events.services import ConfigurationChanged, ingest

    read = EventConfiguration.objects.get(pk=cart_configuration.pk)  # as a process read (and cached) it
    validated = validate_event(read.published_schema, seed_body())
    publish_configuration(configuration=cart_configuration)  # published again: a new publication
    for key in (None, "order-1"):
        with pytest.raises(ConfigurationChanged):
            ingest(configuration=read, validated=validated, idempotency_key=key)
    assert Event.objects.count() == 0
    current = EventConfiguration.objects.get(pk=cart_configuration.pk)
    event, created = ingest(configuration=current, validated=validated)
    assert created and Event.objects.get().pk == event.pk and event.status == "pending"

    unpublish_configuration(configuration=cart_configuration)
    with pytest.raises(ConfigurationChanged):
        ingest(configuration=current, validated=validated)
    with pytest.raises(ConfigurationChanged):  # nor is an Idempotency-Key replayed
        ingest(configuration=current, validated=validated, idempotency_key="order-1")
    assert Event.objects.count() == 1


def test_ingest_stores_the_event_as_the_orm_would(cart_configuration):
    from events.services import ingest

    validated = validate_event(
        cart_configuration.published_schema, seed_body(scheduled=FUTURE, expiration=None)
    )
    event, _ = ingest(configuration=cart_configuration, validated=validated, idempotency_key="k")
    stored = Event.objects.get(pk=event.pk)
    for field in Event._meta.concrete_fields:
        assert getattr(stored, field.attname) == getattr(event, field.attname), field.name
    assert stored.next_attempt_at == stored.scheduled_at and stored.enqueued_at is None
    assert stored.idempotency_key == "k" and len(stored.request_fingerprint) == 64
