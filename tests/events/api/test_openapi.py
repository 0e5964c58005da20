"""The OpenAPI document: generic shape for anyone, the caller's published events with their schema."""

import json

import pytest
from openapi_spec_validator import validate

from events.api.openapi import request_schema
from events.publication import unpublish_configuration
from events.schema import sample_body
from tests.conftest import CART_URL, api_client_for, publish_events

pytestmark = pytest.mark.django_db


def schema_of(client, **extra):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json", **extra)
    assert response.status_code == 200
    return json.loads(response.content)


def test_anonymous_readers_see_the_generic_api_but_no_organizations_events(client, cart_configuration):
    document = schema_of(client)
    validate(document)
    assert "/ims/token/v3" in document["paths"]
    assert "/{organization}/campaign/{apiName}/{eventId}" in document["paths"]
    assert CART_URL not in document["paths"]


def test_an_api_caller_sees_its_published_events_with_their_own_schema(
    api, cart_configuration, other_organization
):
    publish_events(other_organization, {"name": "secretEvent", "channel": "email", "fields": []})
    document = schema_of(api)
    validate(document)
    post = document["paths"][CART_URL]["post"]
    body = post["requestBody"]["content"]["application/json"]
    ctx = body["schema"]["properties"]["ctx"]
    assert set(ctx["properties"]) == {"firstName", "cartAmount", "lastProduct", "products"}
    assert ctx["properties"]["products"]["items"]["properties"]["price"]
    assert body["schema"]["required"] == ["email"]
    assert set(body["example"]["ctx"]) == set(ctx["properties"])
    assert not any("secretEvent" in path for path in document["paths"])


def test_the_example_is_accepted_by_the_api(api, cart_configuration):
    document = schema_of(api)
    example = document["paths"][CART_URL]["post"]["requestBody"]["content"]["application/json"]["example"]
    response = api.post(CART_URL, data=json.dumps(example), content_type="application/json")
    assert response.status_code == 201, response.json()


def test_unpublished_events_leave_the_document(api, cart_configuration):
    unpublish_configuration(configuration=cart_configuration)
    assert CART_URL not in schema_of(api)["paths"]


def test_admin_users_see_their_organizations_events(client, administrator, cart_configuration):
    client.force_login(administrator)
    assert CART_URL in schema_of(client)["paths"]


def test_request_schema_matches_the_admin_api_preview_fields(cart_configuration):
    published = cart_configuration.published_schema
    schema = request_schema(published)
    assert set(sample_body(published)) <= set(schema["properties"])


def test_swagger_ui_is_served_without_a_cdn(client, db):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"cdn.jsdelivr" not in response.content and b"swagger-ui" in response.content


def test_bad_credentials_on_the_schema_are_refused(client, cart_configuration):
    response = client.get("/api/schema/", HTTP_AUTHORIZATION="Bearer nope", HTTP_X_API_KEY="nope")
    assert response.status_code == 401


def test_another_organizations_caller_does_not_see_ours(cart_configuration, other_organization):
    intruder = api_client_for(other_organization)
    assert CART_URL not in schema_of(intruder)["paths"]


def test_the_schema_states_the_bounds_the_api_enforces(api, cart_configuration):
    document = schema_of(api)
    operation = document["paths"][CART_URL]["post"]
    content = operation["requestBody"]["content"]
    assert content["text/plain"]["schema"] == content["application/json"]["schema"]
    body = content["application/json"]["schema"]
    ctx = body["properties"]["ctx"]["properties"]
    assert ctx["firstName"]["maxLength"] == 10_000 and "U+0000" in ctx["firstName"]["description"]
    products = ctx["products"]
    assert products["maxItems"] == 1_000
    price = products["items"]["properties"]["price"]["oneOf"]
    assert {"type": "string", "pattern": r"^[+-]?\d+(\.\d+)?$"}.items() <= price[1].items()
    assert "30 significant digits" in price[0]["description"]
    assert body["properties"]["email"]["maxLength"] == 254
    assert "503" in operation["responses"]
    assert "post" in document["paths"][CART_URL + "/{PKey}"]  # the SDK's read
