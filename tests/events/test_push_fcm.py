"""Push events through the FCM backend (a fake on loopback), as the worker processes them: a dead
token is quarantined and its next event `ignored`; FCM's Retry-After delays the next attempt."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from campaign.models import Quarantine
from events import pipeline
from events.models import Event
from events.schema import validate_event
from events.services import ingest
from tests.conftest import publish_events
from tests.fcm import FakeGoogle, fcm_error, use_fake

pytestmark = pytest.mark.django_db


@pytest.fixture
def fake(settings):
    google = FakeGoogle()
    use_fake(settings, google)
    yield google
    google.stop()


@pytest.fixture
def shipped(organization):
    (configuration,) = publish_events(
        organization,
        {
            "name": "shipped",
            "channel": "push",
            "fields": [{"name": "order", "type": "text"}],
            "message": {"title": "Shipped", "body": "Order {{ ctx.order }} is on its way"},
        },
    )
    return configuration


def push(configuration, token: str, **extra) -> Event:
    body = {"pushPlatform": "apns", "registrationToken": token, "ctx": {"order": "A1"}, **extra}
    event, _ = ingest(
        configuration=configuration, validated=validate_event(configuration.published_schema, body)
    )
    return event


def test_a_push_event_goes_to_fcm_with_its_expiration_as_time_to_live(fake, shipped):
    expiration = (timezone.now() + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    event = push(shipped, "token-1", expiration=expiration)
    assert pipeline.process(event.pk) == "processed"
    (send,) = fake.sends
    message = send["body"]["message"]
    assert message["token"] == "token-1" and send["authorization"] == "Bearer access-1"
    assert message["apns"]["payload"]["aps"]["alert"] == {
        "title": "Shipped",
        "body": "Order A1 is on its way",
    }
    assert 3500 <= int(message["android"]["ttl"].removesuffix("s")) <= 3600
    assert message["data"]["PKey"] == event.pkey
    delivery = event.deliveries.get()
    assert delivery.outcome == "sent" and delivery.provider_message_id.startswith(
        "projects/demo-project/messages/"
    )


def test_an_unregistered_token_makes_the_next_event_to_it_ignored(fake, shipped, organization):
    fake.answers.append(fcm_error(404, "UNREGISTERED", "Requested entity was not found."))
    first = push(shipped, "token-dead-1")
    assert pipeline.process(first.pk) == "deliveryFailed"
    first.refresh_from_db()
    assert "UNREGISTERED" in first.last_error
    assert Quarantine.objects.filter(
        organization=organization, channel="push", address="token-dead-1"
    ).exists()

    second = push(shipped, "token-dead-1")
    assert pipeline.process(second.pk) == "ignored"
    second.refresh_from_db()
    assert "quarantined" in second.status_changes.last().reason
    assert len(fake.sends) == 1  # never sent to the dead token again
    other = push(shipped, "token-alive-2")
    assert pipeline.process(other.pk) == "processed"


def test_an_invalid_payload_fails_the_event_but_not_the_token(fake, shipped):
    fake.answers.append(
        fcm_error(400, "INVALID_ARGUMENT", "Invalid data payload key", field_name="message.data[0].key")
    )
    first = push(shipped, "token-3")
    assert pipeline.process(first.pk) == "deliveryFailed"
    assert not Quarantine.objects.filter(channel="push").exists()
    assert pipeline.process(push(shipped, "token-3").pk) == "processed"


def test_unavailable_with_retry_after_schedules_the_retry_no_earlier(fake, shipped, settings):
    settings.EVENT_RETRY_DELAY_SECONDS = 1
    unavailable = fcm_error(503, "UNAVAILABLE", "The service is currently unavailable.")
    unavailable.headers["Retry-After"] = "600"
    fake.answers.append(unavailable)
    event = push(shipped, "token-4")
    before = timezone.now()
    assert pipeline.process(event.pk) == "pending"
    event.refresh_from_db()
    assert event.next_attempt_at >= before + dt.timedelta(seconds=600)
    assert "UNAVAILABLE" in event.last_error
    assert event.deliveries.get().outcome == "temporaryFailure"


def test_quota_exceeded_without_retry_after_backs_off_as_usual(fake, shipped, settings):
    settings.EVENT_RETRY_DELAY_SECONDS = 1
    fake.answers.append(fcm_error(429, "QUOTA_EXCEEDED", "Quota exceeded"))
    event = push(shipped, "token-5")
    before = timezone.now()
    assert pipeline.process(event.pk) == "pending"
    event.refresh_from_db()
    assert before + dt.timedelta(seconds=1) <= event.next_attempt_at <= before + dt.timedelta(seconds=60)


def test_a_dead_token_of_4000_characters_is_quarantined_and_its_next_event_ignored(
    fake, shipped, organization
):
    dead, alive = "d" * 3999 + "1", "d" * 3999 + "2"  # the API takes up to 4096; beyond a btree entry
    fake.answers.append(fcm_error(404, "UNREGISTERED", "Requested entity was not found."))
    assert pipeline.process(push(shipped, dead).pk) == "deliveryFailed"
    entry = Quarantine.objects.get(organization=organization, channel="push")
    assert entry.address == dead

    later = push(shipped, dead)
    assert pipeline.process(later.pk) == "ignored"
    assert "quarantined" in later.status_changes.last().reason
    assert pipeline.process(push(shipped, alive).pk) == "processed"  # one character apart: not quarantined
    assert [send["body"]["message"]["token"] for send in fake.sends] == [dead, alive]
