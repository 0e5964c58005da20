"""The event API as web developers use it: the seed's example, every bad input, other organizations."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from events.models import Event, EventConfiguration
from events.publication import unpublish_configuration
from tests.conftest import CART_URL, api_client_for, publish_events, seed_body

pytestmark = pytest.mark.django_db


def post(api, body, url=CART_URL, **extra):
    return api.post(url, data=json.dumps(body), content_type="application/json;charset=utf-8", **extra)


def test_seed_example_is_accepted_verbatim_and_answers_in_the_seed_shape(api, cart_configuration):
    response = post(api, seed_body())
    assert response.status_code == 201
    data = response.json()
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
    assert data["status"] == "pending"
    assert data["email"] == "test@example.com"
    assert data["scheduled"] == "2017-12-01 08:00:00.768Z"
    assert data["expiration"] == "2017-12-31 08:00:00.768Z"
    assert data["ctx"]["firstName"] == "Jack"
    assert data["href"] == f"mcgeometrixx/EVTcartAbandonment/{data['PKey']}"
    assert data["serverUrl"].startswith("http://")
    event = Event.objects.get(pkey=data["PKey"])
    assert event.status == "pending" and event.configuration == cart_configuration


def test_get_by_pkey_answers_the_current_state(api, cart_configuration):
    pkey = post(api, seed_body()).json()["PKey"]
    response = api.get(f"{CART_URL}/{pkey}")
    assert response.status_code == 200
    assert response.json()["PKey"] == pkey and response.json()["status"] == "pending"
    assert api.get(f"{CART_URL}/{pkey}/").status_code == 200  # the seed writes a trailing slash


def test_pkeys_are_opaque_and_unguessable(api, cart_configuration):
    keys = {post(api, seed_body()).json()["PKey"] for _ in range(5)}
    assert len(keys) == 5
    assert all(len(k) >= 20 and not k.isdigit() for k in keys)


@pytest.mark.parametrize(
    "value", ["2017-12-01T08:00:00Z", "2017-12-01 08:00:00", "2017-12-01T08:00:00.768+02:00", "2017-12-01"]
)
def test_dates_parse_with_or_without_the_t(api, cart_configuration, value):
    response = post(api, seed_body(scheduled=value, expiration=None))
    assert response.status_code == 201, response.json()


def test_offsets_are_converted_to_utc(api, cart_configuration):
    response = post(api, seed_body(scheduled="2017-12-01T10:00:00+02:00", expiration=None))
    assert response.json()["scheduled"] == "2017-12-01 08:00:00.000Z"


BAD_BODIES = [
    (seed_body(email=None), "email"),
    ({k: v for k, v in seed_body().items() if k != "email"}, "email"),
    (seed_body(email="not-an-address"), "email"),
    (seed_body(ctx={"firstName": 12}), "ctx.firstName"),
    (seed_body(ctx={"unknown": "x"}), "ctx.unknown"),
    (seed_body(ctx={"firstName": {"nested": "object"}}), "ctx.firstName"),
    (seed_body(ctx={"products": "not a list"}), "ctx.products"),
    (seed_body(ctx={"products": [{"sku": "A", "price": "cheap"}]}), "ctx.products[0].price"),
    (seed_body(ctx={"products": [{"sku": "A", "colour": "red"}]}), "ctx.products[0].colour"),
    (seed_body(ctx="text"), "ctx"),
    (seed_body(scheduled="tomorrow"), "scheduled"),
    (seed_body(expiration="2017-13-45 08:00:00"), "expiration"),
    (seed_body(scheduled="2017-12-31 08:00:00Z", expiration="2017-12-01 08:00:00Z"), "expiration"),
    (seed_body(mobilePhone="+33612345678"), "mobilePhone"),
    (seed_body(extra="field"), "extra"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_bad_bodies_get_400_naming_the_field_and_store_nothing(api, cart_configuration, body, field):
    response = post(api, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == field
    assert field in error["message"]
    assert Event.objects.count() == 0


@pytest.mark.parametrize("raw", ["{bad json", '{"email": "a@b.co",}', "", "null"])
def test_malformed_json_is_400(api, cart_configuration, raw):
    response = api.post(CART_URL, data=raw, content_type="application/json")
    assert response.status_code == 400
    assert "error" in response.json()
    assert Event.objects.count() == 0


def test_a_body_that_is_not_an_object_is_400(api, cart_configuration):
    response = post(api, [seed_body()])
    assert response.status_code == 400 and response.json()["error"]["field"] == "body"


@pytest.mark.parametrize(
    "content_type", ["text/html", "application/x-www-form-urlencoded", "application/xml"]
)
def test_a_body_that_is_not_json_is_415(api, cart_configuration, content_type):
    response = api.post(CART_URL, data=json.dumps(seed_body()), content_type=content_type)
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupportedMediaType"
    assert Event.objects.count() == 0


@override_settings(API_MAX_BODY_BYTES=1024)
def test_a_body_over_the_limit_is_413_before_parsing(api, cart_configuration):
    body = seed_body(ctx={"firstName": "x" * 2000})
    response = post(api, body)
    assert response.status_code == 413
    assert Event.objects.count() == 0
    # Also when the declared length lies: the parser reads at most the limit.
    response = api.generic(
        "POST", CART_URL, json.dumps(body), content_type="application/json", CONTENT_LENGTH="10"
    )
    assert response.status_code in (400, 413)
    assert Event.objects.count() == 0


def test_unknown_event_is_404(api, cart_configuration):
    for url in (
        "/geometrixx/campaign/mcgeometrixx/EVTnothing",
        "/geometrixx/campaign/mcgeometrixx/cartAbandonment",
    ):
        response = post(api, seed_body(), url=url)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "notFound"


def test_unpublished_event_is_404_and_stores_nothing(api, cart_configuration):
    unpublish_configuration(configuration=cart_configuration)
    assert post(api, seed_body()).status_code == 404
    assert Event.objects.count() == 0


def test_draft_event_never_published_is_404(api, organization, cart_configuration):
    EventConfiguration.objects.create(organization=organization, name="draftOnly")
    response = post(api, seed_body(), url="/geometrixx/campaign/mcgeometrixx/EVTdraftOnly")
    assert response.status_code == 404


def test_later_edits_wait_for_the_next_publish(api, cart_configuration):
    cart_configuration.fields.filter(name="firstName").update(type="integer")
    assert post(api, seed_body()).status_code == 201  # the frozen schema still says text


def test_missing_credentials_are_401(cart_configuration, client):
    response = client.post(CART_URL, data=json.dumps(seed_body()), content_type="application/json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_token_without_matching_api_key_is_401(api, cart_configuration, organization):
    other = api_client_for(organization)
    api.credentials(
        HTTP_AUTHORIZATION=api._credentials["HTTP_AUTHORIZATION"], HTTP_X_API_KEY=other.credential.api_key
    )
    assert post(api, seed_body()).status_code == 401


def test_token_and_key_of_two_organizations_are_404_and_reveal_nothing(
    api, cart_configuration, other_organization
):
    pkey = post(api, seed_body()).json()["PKey"]
    intruder = api_client_for(other_organization)
    for token_of, key_of in ((api, intruder), (intruder, api)):
        mixed = api_client_for(other_organization)
        mixed.credentials(
            HTTP_AUTHORIZATION=token_of._credentials["HTTP_AUTHORIZATION"],
            HTTP_X_API_KEY=key_of.credential.api_key,
        )
        for response in (post(mixed, seed_body()), mixed.get(f"{CART_URL}/{pkey}")):
            assert response.status_code == 404
            assert pkey not in response.content.decode()
    assert Event.objects.count() == 1


@pytest.mark.parametrize("accept", ["text/plain", "application/xml", "text/html;q=0.9"])
def test_any_accept_header_gets_json_never_406(api, cart_configuration, accept):
    created = post(api, seed_body(), HTTP_ACCEPT=accept)
    assert created.status_code == 201 and created["Content-Type"] == "application/json"
    fetched = api.get(f"{CART_URL}/{created.json()['PKey']}", HTTP_ACCEPT=accept)
    assert fetched.status_code == 200 and fetched.json()["PKey"] == created.json()["PKey"]
    assert post(api, {"ctx": {}}, HTTP_ACCEPT=accept).json()["error"]["field"] == "email"


@pytest.mark.parametrize("body", ["null", "[1, 2]", "42", '"text"'])
def test_a_body_that_is_not_a_json_object_is_400_naming_the_body(api, cart_configuration, body):
    response = api.post(CART_URL, data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "body"
    assert Event.objects.count() == 0


def test_api_key_alone_is_401(api, cart_configuration):
    api.credentials(HTTP_X_API_KEY=api.credential.api_key)
    assert post(api, seed_body()).status_code == 401


def test_revoked_credential_kills_its_tokens(api, cart_configuration):
    from campaign.services import revoke_credential

    revoke_credential(credential=api.credential)
    assert post(api, seed_body()).status_code == 401


def test_expired_token_is_401(api, cart_configuration):
    from django.utils import timezone

    from campaign.models import AccessToken

    AccessToken.objects.update(expires_at=timezone.now())
    assert post(api, seed_body()).status_code == 401


def test_another_organizations_credentials_see_nothing(api, cart_configuration, other_organization):
    pkey = post(api, seed_body()).json()["PKey"]
    intruder = api_client_for(other_organization)
    for response in (
        post(intruder, seed_body()),
        intruder.get(f"{CART_URL}/{pkey}"),
        intruder.get(CART_URL),
    ):
        assert response.status_code in (403, 404)
        assert pkey not in response.content.decode()
        assert "geometrixx" not in json.dumps(response.json()["error"]).lower().replace("mcgeometrixx", "")
    # Even with its own organization in the URL, another org's event is not found.
    publish_events(other_organization, {"name": "cartAbandonment", "channel": "email", "fields": []})
    response = intruder.get(f"/acme/campaign/mcacme/EVTcartAbandonment/{pkey}")
    assert response.status_code == 404
    assert Event.objects.count() == 1


def test_mismatched_api_name_is_404(api, cart_configuration):
    response = post(api, seed_body(), url="/geometrixx/campaign/mcother/EVTcartAbandonment")
    assert response.status_code == 404


def test_list_is_newest_first_filterable_and_paginated(api, cart_configuration):
    keys = [post(api, seed_body()).json()["PKey"] for _ in range(5)]
    Event.objects.filter(pkey=keys[0]).update(status="processed")
    first = api.get(CART_URL, {"_lineCount": 2}).json()
    assert [e["PKey"] for e in first["content"]] == keys[::-1][:2]
    second = api.get(first["next"]["href"]).json()
    assert [e["PKey"] for e in second["content"]] == keys[::-1][2:4]
    third = api.get(second["next"]["href"]).json()
    assert [e["PKey"] for e in third["content"]] == [keys[0]]
    assert "next" not in third
    processed = api.get(CART_URL, {"status": "processed"}).json()
    assert [e["PKey"] for e in processed["content"]] == [keys[0]]
    assert api.get(CART_URL, {"status": "bogus"}).status_code == 400
    assert api.get(CART_URL, {"_lineCount": "x"}).status_code == 400


def test_unknown_pkey_is_404(api, cart_configuration):
    assert api.get(f"{CART_URL}/doesNotExist").status_code == 404


def test_idempotency_key_returns_the_first_event(api, cart_configuration):
    first = post(api, seed_body(), HTTP_IDEMPOTENCY_KEY="order-42")
    again = post(api, seed_body(), HTTP_IDEMPOTENCY_KEY="order-42")
    assert first.status_code == 201 and again.status_code == 201
    assert again.json()["PKey"] == first.json()["PKey"]
    assert again["Idempotent-Replayed"] == "true"
    assert Event.objects.count() == 1
    conflict = post(api, seed_body(ctx={"firstName": "Jill"}), HTTP_IDEMPOTENCY_KEY="order-42")
    assert conflict.status_code == 422
    assert Event.objects.count() == 1


def test_idempotency_key_expires_after_the_window(api, cart_configuration):
    import datetime as dt

    from django.utils import timezone

    first = post(api, seed_body(), HTTP_IDEMPOTENCY_KEY="k").json()["PKey"]
    Event.objects.update(created_at=timezone.now() - dt.timedelta(hours=25))
    second = post(api, seed_body(), HTTP_IDEMPOTENCY_KEY="k").json()["PKey"]
    assert first != second and Event.objects.count() == 2


@override_settings(
    REST_FRAMEWORK={
        **__import__("django.conf").conf.settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"credential": "3/min"},
    }
)
def test_rate_limit_per_credential_answers_429_with_retry_after(api, cart_configuration, organization):
    from rest_framework.settings import api_settings

    api_settings.reload()
    try:
        from campaign.auth import CredentialRateThrottle

        CredentialRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
        codes = [post(api, seed_body()).status_code for _ in range(4)]
        assert codes == [201, 201, 201, 429]
        limited = post(api, seed_body())
        assert int(limited["Retry-After"]) > 0
        assert (
            api_client_for(organization).get(CART_URL).status_code == 200
        )  # another credential is not limited
    finally:
        CredentialRateThrottle.THROTTLE_RATES = {"credential": None}
        api_settings.reload()


def test_sms_event_normalises_the_phone_to_e164(api, organization):
    publish_events(
        organization,
        {
            "name": "otp",
            "channel": "sms",
            "fields": [{"name": "code", "type": "text"}],
            "message": {"text": "Code {{ ctx.code }}"},
        },
    )
    url = "/geometrixx/campaign/mcgeometrixx/EVTotp"
    response = post(api, {"mobilePhone": "+33 6 12 34 56 78", "ctx": {"code": "1234"}}, url=url)
    assert response.status_code == 201
    assert response.json()["mobilePhone"] == "+33612345678"
    # Test ranges (+1 555 01xx, +44 7700 900xxx) are numbers of the right length: accepted.
    for number in ("+15555550123", "+447700900123"):
        assert post(api, {"mobilePhone": number, "ctx": {"code": "1"}}, url=url).status_code == 201
    assert (
        post(api, {"mobilePhone": "12", "ctx": {"code": "1"}}, url=url).json()["error"]["field"]
        == "mobilePhone"
    )
    assert post(api, {"ctx": {"code": "1"}}, url=url).json()["error"]["field"] == "mobilePhone"


def test_push_event_needs_platform_and_token(api, organization):
    publish_events(
        organization,
        {
            "name": "shipped",
            "channel": "push",
            "fields": [],
            "message": {"title": "Shipped", "body": "On its way"},
        },
    )
    url = "/geometrixx/campaign/mcgeometrixx/EVTshipped"
    ok = post(api, {"pushPlatform": "fcm", "registrationToken": "tok", "application": "app"}, url=url)
    assert ok.status_code == 201
    assert ok.json()["pushPlatform"] == "gcm"
    bad = post(api, {"pushPlatform": "blackberry", "registrationToken": "tok"}, url=url)
    assert bad.json()["error"]["field"] == "pushPlatform"
    assert post(api, {"pushPlatform": "apns"}, url=url).json()["error"]["field"] == "registrationToken"


def test_profile_event_needs_its_reconciliation_key(api, organization):
    publish_events(
        organization,
        {
            "name": "welcome",
            "channel": "email",
            "targeting": "profile",
            "fields": [{"name": "email", "type": "email"}, {"name": "plan", "type": "text"}],
            "reconciliation": {"eventField": "email", "profileField": "email"},
        },
    )
    url = "/geometrixx/campaign/mcgeometrixx/EVTwelcome"
    assert post(api, {"ctx": {"email": "jane@example.com", "plan": "gold"}}, url=url).status_code == 201
    assert post(api, {"ctx": {"plan": "gold"}}, url=url).json()["error"]["field"] == "ctx.email"


def test_field_rules_required_max_length_and_values(api, organization):
    publish_events(
        organization,
        {
            "name": "typed",
            "channel": "email",
            "fields": [
                {"name": "code", "type": "text", "required": True, "maxLength": 4},
                {"name": "tier", "type": "text", "values": ["gold", "silver"]},
                {"name": "count", "type": "integer"},
                {"name": "flag", "type": "boolean"},
                {"name": "day", "type": "date"},
                {"name": "at", "type": "datetime"},
                {"name": "link", "type": "url"},
                {"name": "mail", "type": "email"},
                {"name": "amount", "type": "decimal"},
            ],
        },
    )
    url = "/geometrixx/campaign/mcgeometrixx/EVTtyped"
    good = {
        "code": "AB",
        "tier": "gold",
        "count": 3,
        "flag": True,
        "day": "2024-01-31",
        "at": "2024-01-31 10:00:00Z",
        "link": "https://example.com",
        "mail": "a@example.com",
        "amount": "12.50",
    }
    assert post(api, {"email": "a@example.com", "ctx": good}, url=url).status_code == 201
    for key, value in [
        ("code", "ABCDE"),
        ("tier", "bronze"),
        ("count", 1.5),
        ("count", True),
        ("flag", "yes"),
        ("day", "31/01/2024"),
        ("at", "noon"),
        ("link", "not a url"),
        ("mail", "nope"),
        ("amount", "12,5"),
    ]:
        response = post(api, {"email": "a@example.com", "ctx": {**good, key: value}}, url=url)
        assert response.status_code == 400 and response.json()["error"]["field"] == f"ctx.{key}", (key, value)
    missing = {k: v for k, v in good.items() if k != "code"}
    assert (
        post(api, {"email": "a@example.com", "ctx": missing}, url=url).json()["error"]["field"] == "ctx.code"
    )


# --- Adobe's clients, unchanged, and every value bounded --------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain;charset=UTF-8", "text/plain", "application/json"])
def test_json_is_accepted_as_application_json_or_text_plain_as_adobes_sdk_sends_it(
    api, cart_configuration, content_type
):
    response = api.post(CART_URL, data=json.dumps(seed_body()), content_type=content_type)
    assert response.status_code == 201, response.json()
    assert Event.objects.get(pkey=response.json()["PKey"]).ctx["firstName"] == "Jack"


@pytest.mark.parametrize(("raw", "code"), [("hello", "malformedJson"), ("[1, 2]", "invalidField")])
def test_text_plain_must_still_be_a_json_object(api, cart_configuration, raw, code):
    response = api.post(CART_URL, data=raw, content_type="text/plain;charset=UTF-8")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert Event.objects.count() == 0


def test_a_post_without_a_body_on_an_events_url_answers_as_the_get(api, cart_configuration):
    pkey = post(api, seed_body()).json()["PKey"]
    read = api.generic("POST", f"{CART_URL}/{pkey}", "")  # Adobe's SDK: no body, no Content-Type
    assert read.status_code == 200
    assert read.json() == api.get(f"{CART_URL}/{pkey}").json()
    assert api.generic("POST", f"{CART_URL}/unknown", "").status_code == 404
    assert Event.objects.count() == 1


def raw_body(ctx_json: str) -> str:
    """The seed's body with a raw JSON `ctx`, so that numbers reach the server as written."""
    return '{"email": "test@example.com", "ctx": ' + ctx_json + "}"


PRICE = "ctx.products[0].price"
OUT_OF_BOUNDS = [
    ('{"products": [{"price": NaN}]}', PRICE),
    ('{"products": [{"price": Infinity}]}', PRICE),
    ('{"products": [{"price": -Infinity}]}', PRICE),
    ('{"products": [{"price": "NaN"}]}', PRICE),
    ('{"products": [{"price": "Infinity"}]}', PRICE),
    ('{"products": [{"price": "-inf"}]}', PRICE),
    ('{"products": [{"price": 1e99999999}]}', PRICE),
    ('{"products": [{"price": "1e99999999"}]}', PRICE),
    ('{"products": [{"price": 1.5E2}]}', PRICE),
    ('{"products": [{"price": 1234567890123456789012345678901}]}', PRICE),  # 31 digits
    ('{"products": [{"price": "1234567890123456789012345678.901"}]}', PRICE),
    ('{"products": [{"price": 12345678901234567890.1234567890123}]}', PRICE),  # 33 digits
    ('{"products": [{"price": %s}]}' % ("9" * 400), PRICE),
    ('{"products": [{"price": "%s"}]}' % ("9" * 400), PRICE),
    ('{"firstName": "Ja\\u0000ck"}', "ctx.firstName"),
    ('{"firstName": "Ja\\ud800ck"}', "ctx.firstName"),
    ('{"products": [{"sku": "\\udfff"}]}', "ctx.products[0].sku"),
    ('{"lastProduct": "' + "x" * 10_001 + '"}', "ctx.lastProduct"),
    ('{"products": [' + ", ".join(['{"sku": "A"}'] * 1_001) + "]}", "ctx.products"),
]


@pytest.mark.parametrize(("ctx_json", "field"), OUT_OF_BOUNDS)
def test_values_out_of_bounds_are_400_naming_the_field_and_store_nothing(
    api, cart_configuration, ctx_json, field
):
    response = api.post(CART_URL, data=raw_body(ctx_json), content_type="application/json")
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalidField", field)
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"email": "te\\u0000st@example.com"}', "email"),
        ('{"email": "test@example.com", "scheduled": "2030-01-01\\u0000"}', "scheduled"),
        ('{"email": "test@example.com", "expiration": "\\ud83d"}', "expiration"),
    ],
)
def test_recipients_and_dates_refuse_nul_and_lone_surrogates(api, cart_configuration, body, field):
    response = api.post(CART_URL, data=body, content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]["field"] == field
    assert Event.objects.count() == 0


def test_values_at_the_bounds_are_accepted_and_kept_digit_for_digit(api, cart_configuration):
    thirty_digits = "123456789012345678901234567.890"
    long_text = "é" * 10_000
    prices = f'[{{"price": 125.50}}, {{"price": {thirty_digits}}}, {{"price": "-0.5"}}, {{"price": 7}}]'
    ctx_json = f'{{"lastProduct": "{long_text}", "products": {prices}}}'
    response = api.post(CART_URL, data=raw_body(ctx_json), content_type="application/json")
    assert response.status_code == 201, response.json()
    prices = [p["price"] for p in Event.objects.get().ctx["products"]]
    assert prices == [125.5, thirty_digits, "-0.5", 7]  # a double cannot hold 30 digits: kept as text


def test_json_nested_too_deeply_is_malformed_not_a_crash(api, cart_configuration):
    response = api.post(CART_URL, data="[" * 100_000, content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "malformedJson"


def test_an_integer_field_keeps_to_64_bits(api, organization):
    publish_events(
        organization,
        {
            "name": "points",
            "channel": "email",
            "targeting": "event",
            "fields": [{"name": "points", "type": "integer"}],
            "message": {"subject": "s", "text": "{{ ctx.points }}"},
        },
    )
    url = "/geometrixx/campaign/mcgeometrixx/EVTpoints"
    for points, status in ((2**63 - 1, 201), (-(2**63), 201), (2**63, 400), (-(2**63) - 1, 400)):
        response = api.post(url, data=raw_body(f'{{"points": {points}}}'), content_type="application/json")
        assert response.status_code == status, (points, response.json())
        if status == 400:
            assert response.json()["error"]["field"] == "ctx.points"
    assert sorted(e.ctx["points"] for e in Event.objects.all()) == [-(2**63), 2**63 - 1]


def test_the_database_out_of_reach_is_503_json_with_retry_after(api, cart_configuration, monkeypatch):
    from django.db import OperationalError

    from events import services

    def unreachable(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(services, "ingest", unreachable)
    response = post(api, seed_body())
    assert response.status_code == 503 and int(response["Retry-After"]) > 0
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "serviceUnavailable"


def test_an_unexpected_error_is_500_json_with_the_id_of_its_log_line(
    api, cart_configuration, monkeypatch, caplog
):
    from events import services

    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(services, "ingest", broken)
    api.raise_request_exception = False
    response = post(api, seed_body())
    assert response.status_code == 500 and response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "internalError" and error["id"] in error["message"]
    assert error["id"] in caplog.text and "RuntimeError: a bug" in caplog.text


# --- The published configuration, cached in each process, and the conditional INSERT ---------------


def behind_this_process(configuration_pk: int, **changes) -> None:
    """A publication change made by another process, that this one has not heard of yet (no
    generation bump here): its cached copy of the configuration is now stale."""
    EventConfiguration.objects.filter(pk=configuration_pk).update(**changes)


def test_an_unpublish_takes_the_endpoint_down_at_once_even_behind_a_warm_cache(api, cart_configuration):
    assert post(api, seed_body()).status_code == 201  # this process has now cached the configuration
    behind_this_process(cart_configuration.pk, status="draft")
    response = post(api, seed_body())
    assert response.status_code == 404 and response.json()["error"]["code"] == "notFound"
    assert post(api, seed_body(), HTTP_IDEMPOTENCY_KEY="k-1").status_code == 404
    # Whatever else is wrong with the request: the endpoint is gone.
    assert post(api, {"ctx": {}}).status_code == 404
    assert api.post(CART_URL, data="<xml/>", content_type="application/xml").status_code == 404
    assert Event.objects.count() == 1


def test_an_idempotent_replay_after_an_unpublish_is_404_even_behind_a_warm_cache(api, cart_configuration):
    first = post(api, seed_body(), HTTP_IDEMPOTENCY_KEY="order-7")
    assert first.status_code == 201
    behind_this_process(cart_configuration.pk, status="draft")
    assert post(api, seed_body(), HTTP_IDEMPOTENCY_KEY="order-7").status_code == 404
    assert Event.objects.count() == 1


def test_a_republished_schema_applies_to_the_next_post_even_behind_a_warm_cache(api, cart_configuration):
    from django.utils import timezone

    assert post(api, seed_body()).status_code == 201
    schema = cart_configuration.published_schema
    coupon = {**schema, "fields": [*schema["fields"], {"name": "coupon", "type": "integer"}]}
    behind_this_process(cart_configuration.pk, published_schema=coupon, published_at=timezone.now())
    with_coupon = seed_body(ctx={"firstName": "Jack", "coupon": 10})
    assert post(api, with_coupon).status_code == 201  # validated again against the new schema
    wrong_type = post(api, seed_body(ctx={"coupon": "ten"}))
    assert wrong_type.status_code == 400 and wrong_type.json()["error"]["field"] == "ctx.coupon"
    assert Event.objects.filter(ctx__coupon=10).count() == 1


def test_a_republish_with_a_changed_schema_reaches_this_processs_cache(api, cart_configuration):
    from events.publication import publish_configuration
    from tests.factories import FieldFactory

    with_coupon = seed_body(ctx={"coupon": "X"})
    assert post(api, with_coupon).json()["error"]["field"] == "ctx.coupon"  # cached: no coupon yet
    FieldFactory(configuration=cart_configuration, name="coupon", position=9)
    publish_configuration(configuration=cart_configuration)
    assert post(api, with_coupon).status_code == 201


def test_a_configuration_published_again_during_the_post_answers_503_and_stores_nothing(
    api, cart_configuration, monkeypatch
):
    from events import services

    def always_changed(*, configuration, **kwargs):
        raise services.ConfigurationChanged(configuration.event_id)

    monkeypatch.setattr(services, "ingest", always_changed)
    response = post(api, seed_body())
    assert response.status_code == 503 and int(response["Retry-After"]) > 0
    assert response.json()["error"]["code"] == "serviceUnavailable"
    assert Event.objects.count() == 0


def test_a_post_reads_the_configuration_from_this_processs_cache(
    api, cart_configuration, django_assert_num_queries
):
    assert post(api, seed_body()).status_code == 201  # the token and the configuration are cached
    with django_assert_num_queries(1):  # the INSERT, conditional on the publication
        assert post(api, seed_body()).status_code == 201


@pytest.mark.parametrize(
    ("extra", "server_url"),
    [
        ({}, "http://testserver"),
        ({"HTTP_HOST": "localhost:8000"}, "http://localhost:8000"),
        ({"HTTP_X_FORWARDED_PROTO": "https", "HTTP_HOST": "127.0.0.1"}, "https://127.0.0.1"),
    ],
)
def test_the_server_url_is_the_requests_scheme_and_host(api, cart_configuration, extra, server_url):
    assert post(api, seed_body(), **extra).json()["serverUrl"] == server_url


@override_settings(PUBLIC_URL="https://campaign.example.com/")
def test_the_server_url_is_the_public_url_when_set(api, cart_configuration):
    assert post(api, seed_body()).json()["serverUrl"] == "https://campaign.example.com"


def test_options_describes_what_the_endpoint_reads_and_writes(api, cart_configuration):
    response = api.options(CART_URL)
    assert response.status_code == 200 and response["Allow"] == "GET, POST, HEAD, OPTIONS"
    assert response.json() == {
        "name": "Event",
        "description": "",
        "renders": ["application/json"],
        "parses": ["application/json", "text/plain"],
    }
