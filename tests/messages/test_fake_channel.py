"""Adding a channel is one module plus its registration: the carrier pigeon of fake_channel.py,
registered in this test's settings, goes from the configuration file through the API, the
pipeline, the admin's preview and the OpenAPI document to its backend, with no other code knowing it."""

from __future__ import annotations

import json

import pytest

from events import pipeline
from events.configuration_file import export_organization
from events.models import Event
from messages.channels import backend_for, channel_names
from tests.conftest import publish_events
from tests.messages import fake_channel

pytestmark = pytest.mark.django_db

PIGEON_URL = "/geometrixx/campaign/mcgeometrixx/EVTseedReady"
SEED_READY = {
    "name": "seedReady",
    "label": "Seed ready",
    "channel": "pigeon",
    "targeting": "event",
    "fields": [{"name": "seed", "type": "text", "required": True}],
    "message": {"note": "Your {{ ctx.seed }} is ready at {{ event.eventId }}"},
}


@pytest.fixture
def pigeon(settings):
    settings.TRANSACTIONAL_CHANNELS = [*settings.TRANSACTIONAL_CHANNELS, "tests.messages.fake_channel.PIGEON"]
    backend_for.cache_clear()
    fake_channel.SENT.clear()
    yield fake_channel.PIGEON
    backend_for.cache_clear()


def post(api, body):
    return api.post(PIGEON_URL, data=json.dumps(body), content_type="application/json")


def test_a_registered_fourth_channel_goes_from_the_api_to_its_backend(pigeon, organization, api):
    (configuration,) = publish_events(organization, SEED_READY)
    assert configuration.get_channel_display() == "Carrier pigeon"
    assert configuration.message.draft_content() == {"note": SEED_READY["message"]["note"]}

    response = post(api, {"loft": " north-tower ", "ctx": {"seed": "millet"}})
    assert response.status_code == 201, response.json()
    answer = response.json()
    assert answer["loft"] == "north-tower" and "email" not in answer  # the channel's key, in and out

    event = Event.objects.get(pkey=answer["PKey"])
    assert pipeline.process(event.pk) == "processed"
    ((recipient, rendered),) = fake_channel.SENT
    assert recipient.address == "north-tower"
    assert rendered.parts == {"note": "Your millet is ready at EVTseedReady"}
    delivery = event.deliveries.get()
    assert (delivery.channel, delivery.recipient, delivery.provider_message_id[:7]) == (
        "pigeon",
        "north-tower",
        "pigeon-",
    )
    assert api.get(f"{PIGEON_URL}/{event.pkey}").json()["status"] == "processed"


def test_the_api_refuses_a_pigeon_event_without_its_loft_or_with_another_channels_key(
    pigeon, organization, api
):
    publish_events(organization, SEED_READY)
    missing = post(api, {"ctx": {"seed": "millet"}}).json()["error"]
    assert missing["field"] == "loft" and "required for a pigeon event" in missing["message"]
    other = post(api, {"loft": "north-tower", "email": "a@example.com", "ctx": {"seed": "x"}}).json()
    assert other["error"]["field"] == "email"
    assert "not a recipient field of a pigeon event" in other["error"]["message"]
    too_long = post(api, {"loft": "x" * 101, "ctx": {"seed": "x"}}).json()["error"]
    assert too_long["field"] == "loft"
    assert Event.objects.count() == 0


def test_the_marketer_previews_the_pigeon_note_in_the_admin(pigeon, organization, client, marketer):
    (configuration,) = publish_events(organization, SEED_READY)
    message = configuration.message
    client.force_login(marketer)
    change = client.get(f"/admin/transactional/transactionalmessage/{message.pk}/change/").content.decode()
    # The editor shows the channel's one part under its label, and its preview with sample data.
    assert ">Note:<" in change and 'name="subject"' not in change
    assert "Your Seed value is ready at EVTseedReady" in change
    preview = client.get(f"/admin/transactional/transactionalmessage/{message.pk}/preview/").content.decode()
    assert "Your Seed value is ready at EVTseedReady" in preview
    edited = client.post(
        f"/admin/transactional/transactionalmessage/{message.pk}/preview/",
        {"ctx": json.dumps({"seed": "hemp"})},
    ).content.decode()
    assert "Your hemp is ready at EVTseedReady" in edited


def test_the_file_and_the_openapi_document_know_the_pigeon_from_its_object(pigeon, organization, api):
    publish_events(organization, SEED_READY)
    exported = export_organization(organization)["events"][0]
    assert exported["channel"] == "pigeon" and exported["message"]["note"] == SEED_READY["message"]["note"]
    document = json.loads(api.get("/api/schema/", HTTP_ACCEPT="application/json").content)
    body = document["paths"][PIGEON_URL]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["required"] == ["loft"]
    assert body["schema"]["properties"]["loft"]["maxLength"] == 100
    assert body["example"]["loft"] == "north-tower"
    assert "loft" in document["components"]["schemas"]["Event"]["properties"]


def test_without_its_registration_the_channel_does_not_exist(organization):
    assert "pigeon" not in channel_names()
    with pytest.raises(Exception, match="unknown channel 'pigeon'"):
        publish_events(organization, SEED_READY)
