"""The FCM HTTP v1 backend against a fake OAuth token endpoint and a fake FCM on loopback."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from google.auth import jwt

from messages.channels import Recipient, RenderedMessage
from messages.channels.fcm import FCM_SCOPE, classify
from messages.channels.push import FcmPushBackend
from tests.fcm import PROJECT, Answer, FakeGoogle, fcm_error, use_fake

GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def fake(settings):
    google = FakeGoogle()
    use_fake(settings, google)
    yield google
    google.stop()


def rendered(**overrides) -> RenderedMessage:
    return RenderedMessage(
        parts={"title": "Shipped", "body": "Order A1 is on its way"},
        data={"eventId": "shipped", "PKey": "p-1"},
        **overrides,
    )


ANDROID = Recipient(address="token-android-1", push_platform="gcm", application="com.example.app")
IPHONE = Recipient(address="token-iphone-1", push_platform="apns", application="com.example.ios")


def test_a_service_account_token_is_minted_and_the_push_sent_with_it(fake):
    result = FcmPushBackend().send(rendered(), ANDROID)
    assert result.sent and result.provider_message_id == f"projects/{PROJECT}/messages/1"
    (assertion,) = fake.assertions
    # Posted to the JSON's token_uri (the fake), signed with the account's key, for Google's audience.
    claims = jwt.decode(assertion, certs=fake.public_pem, audience=GOOGLE_TOKEN_AUDIENCE)
    assert claims["iss"] == fake.service_account["client_email"]
    assert claims["scope"] == FCM_SCOPE
    assert claims["aud"] == GOOGLE_TOKEN_AUDIENCE
    assert jwt.decode_header(assertion)["kid"] == "key-1"
    (send,) = fake.sends
    assert send["path"] == f"/v1/projects/{PROJECT}/messages:send"
    assert send["authorization"] == "Bearer access-1"
    message = send["body"]["message"]
    assert message["token"] == "token-android-1"
    assert message["notification"] == {"title": "Shipped", "body": "Order A1 is on its way"}
    assert message["data"] == {
        "eventId": "shipped",
        "PKey": "p-1",
        "platform": "gcm",
        "application": "com.example.app",
    }
    assert message["android"] == {"priority": "high"}  # no expiration: FCM's own time to live


def test_the_token_serves_later_sends_until_it_is_due(fake):
    backend = FcmPushBackend()
    assert backend.send(rendered(), ANDROID).sent and backend.send(rendered(), IPHONE).sent
    assert len(fake.assertions) == 1
    assert [s["authorization"] for s in fake.sends] == ["Bearer access-1", "Bearer access-1"]


def test_ios_gets_an_aps_alert_and_an_expiration_a_time_to_live(fake):
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    assert FcmPushBackend().send(rendered(expires_at=expires), IPHONE).sent
    message = fake.sends[0]["body"]["message"]
    aps = message["apns"]["payload"]["aps"]
    assert aps["alert"] == {"title": "Shipped", "body": "Order A1 is on its way"}
    ttl = int(message["android"]["ttl"].removesuffix("s"))
    assert 590 <= ttl <= 600
    assert abs(int(message["apns"]["headers"]["apns-expiration"]) - expires.timestamp()) <= 10


def test_a_401_refreshes_the_token_once_and_sends_again(fake):
    fake.answers.append(fcm_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."))
    result = FcmPushBackend().send(rendered(), ANDROID)
    assert result.sent
    assert len(fake.assertions) == 2
    assert [s["authorization"] for s in fake.sends] == ["Bearer access-1", "Bearer access-2"]


def test_a_second_401_is_a_temporary_failure_without_a_third_try(fake):
    refused = fcm_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
    fake.answers += [refused, refused]
    result = FcmPushBackend().send(rendered(), ANDROID)
    assert result.outcome == "temporaryFailure" and "credentials" in result.provider_response
    assert len(fake.sends) == 2 and len(fake.assertions) == 2


def test_a_token_endpoint_that_refuses_is_a_temporary_failure(fake, settings):
    fake.service_account["token_uri"] = f"{fake.base_url}/nowhere"
    settings.FCM_SERVICE_ACCOUNT_JSON = json.dumps(fake.service_account)
    result = FcmPushBackend().send(rendered(), ANDROID)
    assert result.outcome == "temporaryFailure" and "access token" in result.provider_response
    assert fake.sends == [] or all(s["path"] == "/nowhere" for s in fake.sends)


def test_an_unregistered_token_is_dead(fake):
    fake.answers.append(fcm_error(404, "UNREGISTERED", "Requested entity was not found."))
    result = FcmPushBackend().send(rendered(), ANDROID)
    assert result.outcome == "permanentFailure" and result.quarantines
    assert "UNREGISTERED" in result.provider_response and "dead" in result.provider_response


def test_the_answers_are_classified():
    headers: dict[str, str] = {}
    bad_token = fcm_error(
        400,
        "INVALID_ARGUMENT",
        "The registration token is not a valid FCM registration token",
        field_name="message.token",
    )
    result = classify(400, json.dumps(bad_token.body), headers, NOW)
    assert result.outcome == "permanentFailure" and result.quarantines
    bad_data = fcm_error(
        400, "INVALID_ARGUMENT", "Invalid data payload key", field_name="message.data[0].key"
    )
    result = classify(400, json.dumps(bad_data.body), headers, NOW)
    assert result.outcome == "permanentFailure" and not result.quarantines  # the message's fault
    mismatch = fcm_error(403, "SENDER_ID_MISMATCH", "SenderId mismatch")
    assert classify(403, json.dumps(mismatch.body), headers, NOW).quarantines
    denied = fcm_error(403, "PERMISSION_DENIED", "Permission denied")
    assert classify(403, json.dumps(denied.body), headers, NOW).outcome == "temporaryFailure"
    assert classify(502, "<html>bad gateway</html>", headers, NOW).outcome == "temporaryFailure"


def test_retry_after_in_seconds_or_as_a_date_within_its_cap(settings):
    unavailable = json.dumps(fcm_error(503, "UNAVAILABLE", "The service is currently unavailable.").body)
    result = classify(503, unavailable, {"Retry-After": "120"}, NOW)
    assert result.outcome == "temporaryFailure" and result.retry_after == 120
    later = email.utils.format_datetime(NOW + dt.timedelta(seconds=300), usegmt=True)
    quota = json.dumps(fcm_error(429, "QUOTA_EXCEEDED", "Quota exceeded").body)
    assert classify(429, quota, {"Retry-After": later}, NOW).retry_after == 300
    assert classify(503, unavailable, {}, NOW).retry_after is None
    assert classify(503, unavailable, {"Retry-After": "soon"}, NOW).retry_after is None
    settings.FCM_RETRY_AFTER_MAX_SECONDS = 60
    assert classify(503, unavailable, {"Retry-After": "99999999"}, NOW).retry_after == 60


def test_the_service_account_from_a_file_and_the_project_from_a_setting(fake, settings, tmp_path):
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(fake.service_account))
    settings.FCM_SERVICE_ACCOUNT_JSON, settings.FCM_SERVICE_ACCOUNT_FILE = "", str(path)
    settings.FCM_PROJECT_ID = "other-project"
    assert FcmPushBackend().send(rendered(), ANDROID).sent
    assert fake.sends[0]["path"] == "/v1/projects/other-project/messages:send"


@pytest.mark.parametrize(
    "content, problem",
    [
        ("", "FCM_SERVICE_ACCOUNT_JSON or FCM_SERVICE_ACCOUNT_FILE"),
        ("{not json", "not JSON"),
        ('{"type": "authorized_user"}', "not a service account"),
        ('{"type": "service_account"}', "incomplete"),
    ],
)
def test_missing_or_wrong_credentials_are_named(settings, content, problem):
    settings.FCM_SERVICE_ACCOUNT_JSON, settings.FCM_SERVICE_ACCOUNT_FILE = content, ""
    with pytest.raises(ImproperlyConfigured, match=problem):
        FcmPushBackend()


def test_an_unreadable_service_account_file_is_named(settings, tmp_path):
    settings.FCM_SERVICE_ACCOUNT_JSON, settings.FCM_SERVICE_ACCOUNT_FILE = "", str(tmp_path / "missing.json")
    with pytest.raises(ImproperlyConfigured, match="FCM_SERVICE_ACCOUNT_FILE cannot be read"):
        FcmPushBackend()


def test_a_timeout_is_a_temporary_failure(fake, settings):
    settings.FCM_TIMEOUT_SECONDS = 0.2
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts, never answers
    try:
        settings.FCM_BASE_URL = f"http://127.0.0.1:{silent.getsockname()[1]}"
        backend = FcmPushBackend()
        backend.client.access_token()  # minted at the fake; the send then waits on the silent server
        result = backend.send(rendered(), ANDROID)
    finally:
        silent.close()
    assert result.outcome == "temporaryFailure" and "Timeout" in result.provider_response
    assert result.outcome_unknown  # the POST went out, FCM's answer was lost: no failover


def test_a_token_exchange_with_its_retries_stays_within_one_timeout(fake, settings):
    """google-auth retries a token endpoint's 5xx on its own: never past the exchange's deadline,
    so a send stays within its bound (4 timeouts and the retries' sleeps)."""
    settings.FCM_TIMEOUT_SECONDS = 0.5
    fake.token_status = 503
    backend = FcmPushBackend()
    assert backend.max_send_seconds == 4 * 0.5 + 10
    started = time.monotonic()
    result = backend.send(rendered(), ANDROID)
    assert time.monotonic() - started < 0.5 + 5
    assert result.outcome == "temporaryFailure" and result.provider_fault and not result.outcome_unknown
    assert fake.token_requests >= 1 and fake.sends == []


def test_an_answer_without_error_details_is_still_classified():
    assert classify(404, "{}", {}, NOW).outcome == "permanentFailure"
    assert not classify(404, "[]", {}, NOW).quarantines
    assert Answer(200, {}).status == 200


def test_sender_threads_share_one_token_exchange(fake):
    from concurrent.futures import ThreadPoolExecutor

    backend = FcmPushBackend()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda n: backend.send(rendered(), ANDROID), range(16)))
    assert all(result.sent for result in results)
    assert len(fake.assertions) == 1 and len(fake.sends) == 16
