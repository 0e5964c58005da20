"""`GET .../EVTname/PKEY/timeline`: the event's story, behind the same credentials and organization
scoping as the event's GET, which keeps Adobe's shape."""

from __future__ import annotations

import json

import pytest

from events import pipeline
from events.models import Event
from messages import sms_replies
from tests.conftest import CART_URL, api_client_for, publish_events, seed_body

pytestmark = pytest.mark.django_db


def post(api, body):
    return api.post(CART_URL, data=json.dumps(body), content_type="application/json")


def live_body():
    return seed_body(scheduled=None, expiration="2999-01-01 00:00:00.000Z")


def test_the_timeline_of_a_processed_event(api, cart_configuration):
    pkey = post(api, live_body()).json()["PKey"]
    assert pipeline.process(Event.objects.get(pkey=pkey).pk) == "processed"
    response = api.get(f"{CART_URL}/{pkey}/timeline")
    assert response.status_code == 200 and response["Content-Type"].startswith("application/json")
    told = response.json()
    assert told["PKey"] == pkey and told["status"] == "processed" and told["truncated"] is False
    assert [s["step"] for s in told["steps"]] == [
        "received",
        "statusChanged",
        "routed",
        "delivery",
        "attempt",
        "statusChanged",
    ]
    assert told["steps"][-1]["code"] == "sent" and told["steps"][3]["messageId"]
    assert "Jack" not in response.content.decode()  # no ctx value
    assert api.get(f"{CART_URL}/{pkey}/timeline/").status_code == 200  # trailing slash, as the GET


def test_the_regular_get_keeps_adobes_shape(api, cart_configuration):
    pkey = post(api, live_body()).json()["PKey"]
    pipeline.process(Event.objects.get(pkey=pkey).pk)
    data = api.get(f"{CART_URL}/{pkey}").json()
    assert set(data) == {
        "PKey",
        "ctx",
        "email",
        "scheduled",
        "expiration",
        "href",
        "serverUrl",
        "status",
        "type",
    }
    assert data["status"] == "processed" and data["ctx"]["firstName"] == "Jack"


def test_without_credentials_it_is_401(api, cart_configuration, client):
    pkey = post(api, live_body()).json()["PKey"]
    response = client.get(f"{CART_URL}/{pkey}/timeline")
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"


def test_an_unknown_pkey_is_404(api, cart_configuration):
    response = api.get(f"{CART_URL}/doesNotExist/timeline")
    assert response.status_code == 404 and "error" in response.json()


def test_another_organizations_event_is_404_and_reveals_nothing(api, cart_configuration, other_organization):
    pkey = post(api, live_body()).json()["PKey"]
    intruder = api_client_for(other_organization)
    assert intruder.get(f"{CART_URL}/{pkey}/timeline").status_code == 404
    publish_events(other_organization, {"name": "cartAbandonment", "channel": "email", "fields": []})
    response = intruder.get(f"/acme/campaign/mcacme/EVTcartAbandonment/{pkey}/timeline")
    assert response.status_code == 404 and pkey not in response.content.decode()


def test_an_event_of_another_type_is_404(api, cart_configuration, organization):
    publish_events(organization, {"name": "other", "channel": "email", "fields": []})
    pkey = post(api, live_body()).json()["PKey"]
    other_url = "/geometrixx/campaign/mcgeometrixx/EVTother"
    assert api.get(f"{other_url}/{pkey}/timeline").status_code == 404


def test_the_openapi_document_describes_the_timeline(api, cart_configuration):
    document = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    generic = document["paths"]["/{organization}/campaign/{apiName}/{eventId}/{PKey}/timeline"]["get"]
    assert generic["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Timeline"
    }
    assert f"{CART_URL}/{{PKey}}/timeline" in document["paths"]
    timeline = document["components"]["schemas"]["Timeline"]
    assert timeline["properties"]["steps"]["maxItems"] == 500
    assert "truncated" in timeline["properties"]


def test_an_sms_receipt_is_a_provider_event_step_of_the_timeline(api, organization, settings, tmp_path):
    settings.CHANNEL_OUTBOX_DIR = str(tmp_path)
    (otp,) = publish_events(
        organization,
        {"name": "otp", "channel": "sms", "fields": [{"name": "code", "type": "text"}],
         "message": {"text": "Your code: {{ ctx.code }}"}},
    )  # fmt: skip
    url = "/geometrixx/campaign/mcgeometrixx/EVTotp"
    body = {"mobilePhone": "+33612345678", "ctx": {"code": "4242"}}
    pkey = api.post(url, data=json.dumps(body), content_type="application/json").json()["PKey"]
    event = Event.objects.get(pkey=pkey)
    assert pipeline.process(event.pk) == "processed"
    message_id = event.deliveries.get().provider_message_id
    sms_replies.record_receipt(provider="smpp", message_id=message_id, status="DELIVRD", error_code="000")
    told = api.get(f"{url}/{pkey}/timeline").json()
    assert [s["step"] for s in told["steps"]][-2:] == ["statusChanged", "providerEvent"]
    receipt = told["steps"][-1]
    assert receipt["kind"] == "delivered" and receipt["provider"] == "smpp"
    assert receipt["status"] == "DELIVRD" and receipt["errorCode"] == "000"
    assert receipt["quarantined"] is False and receipt["description"] == "DELIVRD (error 000)"
