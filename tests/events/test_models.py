"""The relations between events and messages, declared in the events app: a configuration's
message goes with it, a message keeps its own channel, an event lists the deliveries it caused."""

from __future__ import annotations

import copy

import pytest

from events.configuration_file import import_file
from events.models import EventConfiguration
from events.publication import publish_configuration, unpublish_configuration
from events.services import duplicate_configuration
from messages.models import Delivery, TransactionalMessage
from tests.conftest import CART_EVENT, publish_events

pytestmark = pytest.mark.django_db


def test_deleting_an_organization_deletes_its_configurations_and_their_messages(
    organization, other_organization
):
    publish_events(organization, copy.deepcopy(CART_EVENT))
    kept = publish_events(other_organization, copy.deepcopy(CART_EVENT))[0]
    organization.delete()
    assert list(EventConfiguration.objects.all()) == [kept]
    assert list(TransactionalMessage.objects.all()) == [kept.message]


def test_deleting_configurations_in_bulk_deletes_their_messages(organization):
    publish_events(organization, copy.deepcopy(CART_EVENT), {**copy.deepcopy(CART_EVENT), "name": "second"})
    for configuration in EventConfiguration.objects.all():
        unpublish_configuration(configuration=configuration)
    assert TransactionalMessage.objects.count() == 2
    EventConfiguration.objects.all().delete()
    assert not TransactionalMessage.objects.exists()


def test_a_deleted_draft_message_leaves_its_configuration_which_gets_a_new_one_on_publish(organization):
    (draft,) = import_file({"organization": organization.slug, "events": [copy.deepcopy(CART_EVENT)]})
    draft.message.delete()  # never published: the message admin lets a draft go
    configuration = EventConfiguration.objects.get(pk=draft.pk)
    assert configuration.message is None
    republished = publish_configuration(configuration=configuration)
    message = TransactionalMessage.objects.get()
    assert republished.message == message and message.status == "draft"
    assert "{{ ctx.firstName }}" in message.text  # the default content listing the fields


def test_a_message_knows_its_channel_from_creation_and_a_copy_keeps_it(organization):
    sms = {"name": "otp", "channel": "sms", "fields": [{"name": "code", "type": "text"}],
           "message": {"text": "Code {{ ctx.code }}"}}  # fmt: skip
    configuration = publish_events(organization, sms)[0]
    assert configuration.message.channel == "sms"
    copy_ = duplicate_configuration(configuration=configuration)
    assert copy_.message.channel == "sms" and copy_.message.text == "Code {{ ctx.code }}"
    assert copy_.message != configuration.message and copy_.message.configuration == copy_


def test_a_proof_belongs_to_its_message_and_to_no_event(cart_configuration):
    proof = Delivery.objects.create(
        organization=cart_configuration.organization, message=cart_configuration.message, is_proof=True,
        channel="email", recipient="qa@example.com", outcome="sent",
    )  # fmt: skip
    assert list(cart_configuration.message.deliveries.all()) == [proof]
    assert not proof.events.exists()
