"""Sensitive fields: a value marked sensitive is sent in the message and nowhere else in clear: not in
the API's answers, the admin, exports, reasons, nor in the database's row."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import io
import json

import orjson
import pytest
from cryptography.fernet import Fernet
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from campaign.resources import import_resource_csv
from events import pipeline, selectors, sensitive, typology
from events.configuration_file import ConfigurationFileError, export_organization, import_file
from events.models import Event, ProfileSend, Typology, TypologyRule
from events.schema import validate_event
from events.services import duplicate_configuration, ingest, send_again
from tests.conftest import api_client_for, publish_events, seed_body
from tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db
FUTURE = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.000Z")
SECRET = "4111-1111-1111-1111"
PIN = "PIN-98765"
URL = "/geometrixx/campaign/mcgeometrixx/EVTcardIssued"

CARD_EVENT = {
    "name": "cardIssued",
    "label": "Card issued",
    "channel": "email",
    "targeting": "event",
    "fields": [
        {"name": "firstName", "type": "text"},
        {"name": "cardNumber", "type": "text", "sensitive": True, "maxLength": 19},
    ],
    "collections": [
        {
            "name": "cards",
            "fields": [{"name": "label", "type": "text"}, {"name": "pin", "type": "text", "sensitive": True}],
        }
    ],
    "message": {
        "subject": "{{ ctx.firstName }}, your card",
        "html": "<p>Card {{ ctx.cardNumber }}</p>"
        "{% for c in ctx.cards %}<p>{{ c.label }}: {{ c.pin }}</p>{% endfor %}",
        "text": "Card {{ ctx.cardNumber }}{% for c in ctx.cards %} {{ c.label }}: {{ c.pin }}{% endfor %}",
    },
}


@pytest.fixture
def card_configuration(organization):
    return publish_events(organization, copy.deepcopy(CARD_EVENT))[0]


def body(**ctx):
    data = seed_body(scheduled=None, expiration=FUTURE)
    data["ctx"] = {"firstName": "Jack", "cardNumber": SECRET, "cards": [{"label": "main", "pin": PIN}], **ctx}
    return data


def accept(configuration, data) -> Event:
    event, _ = ingest(
        configuration=configuration, validated=validate_event(configuration.published_schema, data)
    )
    return event


def raw_row(event) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {Event._meta.db_table} WHERE id = %s", [event.pk])
        return " ".join(str(value) for value in cursor.fetchone())


def test_the_schema_marks_the_field_and_the_file_round_trips_it(organization, card_configuration):
    schema = card_configuration.published_schema
    assert schema["sensitiveFields"] == ["cardNumber", "cards.pin"]
    assert {f["name"]: f.get("sensitive", False) for f in schema["fields"]} == {
        "firstName": False,
        "cardNumber": True,
    }
    exported = export_organization(organization)
    (entry,) = [e for e in exported["events"] if e["name"] == "cardIssued"]
    assert {"name": "cardNumber", "type": "text", "sensitive": True, "maxLength": 19} in entry["fields"]
    assert entry["collections"][0]["fields"][1] == {"name": "pin", "type": "text", "sensitive": True}


def test_a_configuration_without_sensitive_fields_publishes_the_same_schema(cart_configuration):
    assert "sensitiveFields" not in cart_configuration.published_schema
    assert all("sensitive" not in f for f in cart_configuration.published_schema["fields"])


def test_the_file_refuses_a_sensitive_that_is_not_a_boolean(organization):
    event = copy.deepcopy(CARD_EVENT)
    event["fields"][1]["sensitive"] = "yes"
    with pytest.raises(ConfigurationFileError, match="sensitive is true or false"):
        import_file({"organization": organization.slug, "events": [event]})


def test_the_stored_row_holds_no_clear_value_and_ctx_is_masked(card_configuration):
    event = accept(card_configuration, body())
    event.refresh_from_db()
    assert event.ctx == {"firstName": "Jack", "cardNumber": "***", "cards": [{"label": "main", "pin": "***"}]}
    row = raw_row(event)
    assert SECRET not in row and PIN not in row and "1111" not in row
    assert event.sensitive_ctx.startswith("gAAAA")  # a Fernet token
    assert sensitive.clear_ctx(event.ctx, event.sensitive_ctx)["cardNumber"] == SECRET


def test_an_event_type_without_sensitive_fields_encrypts_nothing(cart_configuration, monkeypatch):
    def refuse(plain):
        raise AssertionError("nothing to encrypt")

    monkeypatch.setattr("campaign.encryption.encrypt", refuse)
    event = accept(cart_configuration, seed_body(scheduled=None, expiration=FUTURE))
    event.refresh_from_db()
    assert event.sensitive_ctx == "" and event.ctx["firstName"] == "Jack"


def test_an_absent_or_null_sensitive_value_encrypts_nothing(card_configuration):
    data = body()
    data["ctx"] = {"firstName": "Jack", "cardNumber": None}
    event = accept(card_configuration, data)
    event.refresh_from_db()
    assert event.sensitive_ctx == "" and event.ctx == {"firstName": "Jack", "cardNumber": None}


def test_the_api_answers_the_mask_in_the_echo_the_get_and_the_list(organization, card_configuration):
    api = api_client_for(organization)
    response = api.post(URL, data=json.dumps(body()), content_type="application/json")
    assert response.status_code == 201, response.content
    assert response.json()["ctx"]["cardNumber"] == "***"
    assert response.json()["ctx"]["cards"] == [{"label": "main", "pin": "***"}]
    pkey = response.json()["PKey"]
    for answer in (api.get(f"{URL}/{pkey}"), api.get(URL)):
        assert answer.status_code == 200
        text = answer.content.decode()
        assert SECRET not in text and PIN not in text and '"***"' in text


def test_the_length_bound_applies_to_the_clear_value(organization, card_configuration):
    api = api_client_for(organization)
    at_limit = api.post(URL, data=json.dumps(body(cardNumber="x" * 19)), content_type="application/json")
    assert at_limit.status_code == 201  # its ciphertext is far longer: the bound is the value's
    over = api.post(URL, data=json.dumps(body(cardNumber="x" * 20)), content_type="application/json")
    assert over.status_code == 400
    assert "ctx.cardNumber" in over.content.decode()
    assert Event.objects.count() == 1


def test_a_refused_value_is_not_quoted_back(organization):
    event_type = copy.deepcopy(CARD_EVENT)
    event_type["fields"].append({"name": "privateEmail", "type": "email", "sensitive": True})
    publish_events(organization, event_type)
    api = api_client_for(organization)
    response = api.post(
        URL, data=json.dumps(body(privateEmail="not-an-address-77")), content_type="application/json"
    )
    assert response.status_code == 400
    assert "ctx.privateEmail" in response.content.decode()
    assert "not-an-address-77" not in response.content.decode()


def test_the_email_carries_the_value_and_the_delivery_shows_the_mask(card_configuration):
    event = accept(card_configuration, body())
    assert pipeline.process(event.pk) == "processed"
    (sent,) = mail.outbox
    assert SECRET in sent.body and PIN in sent.body and SECRET in sent.alternatives[0][0]
    event.refresh_from_db()
    assert event.ctx["cardNumber"] == "***"  # the worker never writes the clear ctx back
    assert SECRET not in raw_row(event)
    delivery = event.deliveries.get()
    content = json.dumps(delivery.content)
    assert SECRET not in content and PIN not in content
    assert "Card ***" in delivery.content["text"] and "main: ***" in delivery.content["text"]


def test_ctx_for_display_masks_what_the_worker_opened(card_configuration):
    event = accept(card_configuration, body())
    (loaded,) = selectors.claimed_events([event.pk])
    assert selectors.ctx_for_display(loaded)["cardNumber"] == "***"
    sensitive.reveal(loaded)
    assert loaded.ctx["cardNumber"] == SECRET and loaded.ctx["cards"][0]["pin"] == PIN
    assert selectors.ctx_for_display(loaded) == {
        "firstName": "Jack",
        "cardNumber": "***",
        "cards": [{"label": "main", "pin": "***"}],
    }


def test_joins_use_the_clear_value_and_a_reason_never_quotes_it(organization):
    import_resource_csv(
        organization=organization,
        name="product",
        key="sku",
        handle=io.StringIO(f"sku,title\n{PIN},Gold card\n"),
    )
    event_type = copy.deepcopy(CARD_EVENT)
    event_type["enrichments"] = [
        {"kind": "resource", "collection": "cards", "field": "pin", "resource": "product", "required": True}
    ]
    event_type["message"]["text"] = "{% for c in ctx.cards %}{{ c.product.title }} {{ c.pin }}{% endfor %}"
    configuration = publish_events(organization, event_type)[0]
    joined = accept(configuration, body())
    assert pipeline.process(joined.pk) == "processed"
    assert mail.outbox[0].body.strip() == f"Gold card {PIN}"
    assert joined.deliveries.get().content["text"].strip() == "Gold card ***"

    missing = accept(configuration, body(cards=[{"label": "main", "pin": "PIN-00000"}]))
    assert pipeline.process(missing.pk) == "targetingFailed"
    missing.refresh_from_db()
    reasons = " ".join(change.reason for change in missing.status_changes.all())
    assert "PIN-00000" not in reasons + missing.last_error
    assert "has no row '***'" in reasons


def test_an_event_sent_again_keeps_its_values_sealed(card_configuration, settings):
    event = accept(card_configuration, body())
    Event.objects.filter(pk=event.pk).update(status=Event.Status.DELIVERY_FAILED)
    event.refresh_from_db()
    again = send_again(event=event)
    again.refresh_from_db()
    assert again.ctx["cardNumber"] == "***" and SECRET not in raw_row(again)
    assert pipeline.process(again.pk) == "processed"
    assert SECRET in mail.outbox[0].body


def test_a_key_rotation_reencrypts_the_values(card_configuration, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [old]
    event = accept(card_configuration, body())
    settings.ENCRYPTION_KEYS = [new, old]
    out = io.StringIO()
    call_command("reencrypt_sensitive_values", stdout=out)
    assert "1 event(s)" in out.getvalue()
    settings.ENCRYPTION_KEYS = [new]
    assert pipeline.process(event.pk) == "processed"
    assert SECRET in mail.outbox[0].body


def test_the_rotation_stops_with_one_line_when_a_key_is_missing(card_configuration, settings):
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    accept(card_configuration, body())
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CommandError, match="keep the old key") as failed:
        call_command("reencrypt_sensitive_values")
    assert failed.value.returncode == 2


def test_the_openapi_document_marks_the_field(organization, card_configuration):
    api = api_client_for(organization)
    document = json.loads(api.get("/api/schema/", HTTP_ACCEPT="application/json").content)
    ctx = document["paths"][URL]["post"]["requestBody"]["content"]["application/json"]["schema"][
        "properties"
    ]["ctx"]
    assert ctx["properties"]["cardNumber"]["x-sensitive"] is True
    assert '"***"' in ctx["properties"]["cardNumber"]["description"]
    assert ctx["properties"]["cards"]["items"]["properties"]["pin"]["x-sensitive"] is True
    assert "x-sensitive" not in ctx["properties"]["firstName"]


def test_the_admin_pages_and_exports_show_the_mask(client, administrator, card_configuration):
    event = accept(card_configuration, body())
    assert pipeline.process(event.pk) == "processed"
    delivery = event.deliveries.get()
    client.force_login(administrator)
    pages = [
        reverse("admin:events_event_changelist"),
        reverse("admin:events_event_change", args=[event.pk]),
        reverse("admin:transactional_delivery_changelist"),
        reverse("admin:transactional_delivery_change", args=[delivery.pk]),
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        text = response.content.decode()
        assert SECRET not in text and PIN not in text, url
    for url in (reverse("admin:events_event_export"), reverse("admin:transactional_delivery_export")):
        response = client.get(url)
        assert response.status_code == 200
        text = b"".join(response.streaming_content).decode()
        assert event.pkey in text or "sent" in text
        assert SECRET not in text and PIN not in text, url
    search = client.get(reverse("admin:events_event_changelist"), {"q": f"ctx:{SECRET}"})
    assert event.pkey not in search.content.decode()  # a search does not find a sensitive value


def test_the_export_commands_show_the_mask(organization, card_configuration):
    event = accept(card_configuration, body())
    assert pipeline.process(event.pk) == "processed"
    for command in (("export_person", "geometrixx", "test@example.com"), ("export_events", "geometrixx")):
        out = io.StringIO()
        call_command(*command, stdout=out)
        assert SECRET not in out.getvalue() and PIN not in out.getvalue(), command
    person = io.StringIO()
    call_command("export_person", "geometrixx", "test@example.com", stdout=person)
    assert '"***"' in person.getvalue()


def test_a_copy_of_the_event_type_keeps_its_fields_sensitive(card_configuration):
    copied = duplicate_configuration(configuration=card_configuration)
    assert {f.name: f.sensitive for f in copied.fields.all()} == {
        "firstName": False,
        "cardNumber": True,
        "label": False,
        "pin": True,
    }


def test_duplicates_compare_the_clear_values_and_store_a_keyed_digest(organization):
    ProfileFactory(organization=organization, email="jane@example.com", first_name="Jane")
    welcome = {
        "name": "welcome",
        "channel": "email",
        "targeting": "profile",
        "fields": [
            {"name": "email", "type": "email", "sensitive": True},
            {"name": "code", "type": "text", "sensitive": True},
        ],
        "reconciliation": {"eventField": "email", "profileField": "email"},
        "message": {"subject": "Welcome", "html": "", "text": "Your code {{ ctx.code }}"},
    }
    configuration = publish_events(organization, welcome)[0]
    TypologyRule.objects.create(
        typology=Typology.objects.get(organization=organization, is_default=True),
        kind="duplicate",
        code="duplicate",
        name="Same within 10 min",
        window_minutes=10,
    )

    def process(code: str) -> str:
        event = accept(
            configuration, {"ctx": {"email": "jane@example.com", "code": code}, "expiration": FUTURE}
        )
        return pipeline.process(event.pk)

    assert process("1234") == "processed"  # the reconciliation key is sensitive: the worker opens it
    assert process("1234") == "ignored"
    assert process("5678") == "processed"  # only a masked ctx would call this a duplicate
    assert [m.body.strip() for m in mail.outbox] == ["Your code 1234", "Your code 5678"]
    plain = typology.ctx_digest({"email": "jane@example.com", "code": "1234"})
    assert plain not in set(ProfileSend.objects.values_list("ctx_digest", flat=True))


def test_an_idempotency_key_replays_the_event_and_stores_a_keyed_fingerprint(
    organization, card_configuration
):
    api = api_client_for(organization)
    data = body()
    first = api.post(URL, data=json.dumps(data), content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = api.post(URL, data=json.dumps(data), content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 201 and again.json()["PKey"] == first.json()["PKey"]
    assert again.json()["ctx"]["cardNumber"] == "***"
    plain = hashlib.sha256(
        orjson.dumps([card_configuration.event_id, data], option=orjson.OPT_SORT_KEYS, default=str)
    ).hexdigest()
    assert Event.objects.get().request_fingerprint not in ("", plain)


def test_the_sent_email_is_tracked_and_the_shown_copy_is_masked(organization, settings):
    settings.PUBLIC_URL = "https://campaign.example.com/"
    event_type = copy.deepcopy(CARD_EVENT)
    event_type["message"]["html"] = (
        '<p>Card {{ ctx.cardNumber }} <a href="https://shop.example.com/">Shop</a></p>'
    )
    configuration = publish_events(organization, event_type)[0]
    event = accept(configuration, body())
    assert pipeline.process(event.pk) == "processed"
    html = mail.outbox[0].alternatives[0][0]
    delivery = event.deliveries.get()
    assert SECRET in html and "/t/o/" in html and delivery.tracking_id
    assert delivery.tracked_links == ["https://shop.example.com/"]
    assert SECRET not in delivery.content["html"] and "Card ***" in delivery.content["html"]


def test_a_worker_without_the_key_retries_then_fails_and_sends_nothing(card_configuration, settings):
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    event = accept(card_configuration, body())
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    settings.EVENT_MAX_ATTEMPTS = 2
    assert pipeline.process(event.pk) == "pending"
    Event.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())
    assert pipeline.process(event.pk) == "deliveryFailed"
    event.refresh_from_db()
    assert "open with no key of ENCRYPTION_KEYS" in event.last_error
    moves = list(event.status_changes.order_by("created_at", "id").values_list("to_status", "code"))
    assert moves[1:] == [
        ("pending", "sensitiveKeyMissing"),
        ("processing", "claimed"),
        ("deliveryFailed", "sensitiveKeyMissing"),
    ]
    assert mail.outbox == []
