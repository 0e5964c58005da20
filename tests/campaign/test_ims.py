"""POST /ims/token/v3: OAuth client-credentials."""

import pytest

from campaign import services
from campaign.models import AccessToken, hash_secret

pytestmark = pytest.mark.django_db


@pytest.fixture
def issued(organization):
    return services.create_api_credential(organization=organization)


def test_client_credentials_get_a_bearer_token(client, issued):
    response = client.post(
        "/ims/token/v3",
        {
            "grant_type": "client_credentials",
            "client_id": issued.credential.api_key,
            "client_secret": issued.client_secret,
        },
    )
    assert response.status_code == 200
    data = response.json()
    assert data["token_type"] == "bearer" and data["expires_in"] == 86400
    # Stored hashed, never in clear.
    assert not AccessToken.objects.filter(token_hash=data["access_token"]).exists()
    assert AccessToken.objects.filter(token_hash=hash_secret(data["access_token"])).exists()


def test_secret_is_stored_only_hashed(issued):
    issued.credential.refresh_from_db()
    assert issued.client_secret not in issued.credential.secret_hash
    assert issued.credential.secret_hash == hash_secret(issued.client_secret)


@pytest.mark.parametrize("secret", ["wrong", ""])
def test_wrong_or_missing_secret_is_401_without_token(client, issued, secret):
    response = client.post(
        "/ims/token/v3",
        {"grant_type": "client_credentials", "client_id": issued.credential.api_key, "client_secret": secret},
    )
    assert response.status_code == 401
    assert "access_token" not in response.json()
    assert AccessToken.objects.count() == 0


def test_unknown_client_is_401(client, db):
    response = client.post(
        "/ims/token/v3", {"grant_type": "client_credentials", "client_id": "nope", "client_secret": "nope"}
    )
    assert response.status_code == 401


def test_other_grant_types_are_400(client, issued):
    response = client.post(
        "/ims/token/v3",
        {
            "grant_type": "password",
            "client_id": issued.credential.api_key,
            "client_secret": issued.client_secret,
        },
    )
    assert response.status_code == 400 and response.json()["error"] == "unsupported_grant_type"


def test_revoked_credential_gets_no_token(client, issued):
    services.revoke_credential(credential=issued.credential)
    response = client.post(
        "/ims/token/v3",
        {
            "grant_type": "client_credentials",
            "client_id": issued.credential.api_key,
            "client_secret": issued.client_secret,
        },
    )
    assert response.status_code == 401


def test_get_is_not_allowed(client, db):
    assert client.get("/ims/token/v3").status_code == 405


def test_token_lifetime_is_configurable(client, issued, settings):
    settings.API_TOKEN_TTL_SECONDS = 60
    response = client.post(
        "/ims/token/v3",
        {
            "grant_type": "client_credentials",
            "client_id": issued.credential.api_key,
            "client_secret": issued.client_secret,
        },
    )
    assert response.json()["expires_in"] == 60


def test_a_json_body_is_forgiven(client, issued):
    response = client.post(
        "/ims/token/v3",
        data={
            "grant_type": "client_credentials",
            "client_id": issued.credential.api_key,
            "client_secret": issued.client_secret,
        },
        content_type="application/json",
    )
    assert response.status_code == 200 and response.json()["token_type"] == "bearer"
    assert client.post("/ims/token/v3", data="{bad", content_type="application/json").status_code == 400


def test_http_basic_client_authentication_works(client, issued):
    import base64

    basic = base64.b64encode(f"{issued.credential.api_key}:{issued.client_secret}".encode()).decode()
    response = client.post(
        "/ims/token/v3", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=f"Basic {basic}"
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("grant_type=client_credentials", "text/plain"),
        ("<xml/>", "application/xml"),
        ("{bad", "application/json"),
    ],
)
def test_a_body_that_is_neither_a_form_nor_json_is_invalid_request(client, issued, body, content_type):
    response = client.post("/ims/token/v3", body, content_type=content_type)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert not AccessToken.objects.exists()


def test_the_database_out_of_reach_is_503_temporarily_unavailable(client, issued, monkeypatch):
    from django.db import OperationalError

    from campaign import ims

    def unreachable(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(ims, "issue_access_token", unreachable)
    response = client.post(
        "/ims/token/v3",
        {
            "grant_type": "client_credentials",
            "client_id": issued.credential.api_key,
            "client_secret": issued.client_secret,
        },
    )
    assert response.status_code == 503 and response["Retry-After"].isdigit()
    assert response.json()["error"] == "temporarily_unavailable"


@pytest.fixture
def one_minute(monkeypatch):
    """Every failure falls in one window, even if the test runs across a minute's end."""
    from django.utils import timezone

    from campaign import throttling

    window = timezone.now().replace(second=0, microsecond=0)
    monkeypatch.setattr(throttling, "_window", lambda now: window)


def token_request(client, api_key, secret, address="203.0.113.7"):
    return client.post(
        "/ims/token/v3",
        {"grant_type": "client_credentials", "client_id": api_key, "client_secret": secret},
        REMOTE_ADDR=address,
    )


def test_the_eleventh_wrong_secret_in_a_minute_is_slowed_down_not_another_client(
    client, issued, organization
):
    for _ in range(10):
        assert token_request(client, issued.credential.api_key, "wrong").status_code == 401
    refused = token_request(client, issued.credential.api_key, "wrong")
    assert refused.status_code == 429 and refused.json()["error"] == "slow_down"
    assert 1 <= int(refused["Retry-After"]) <= 61
    # The right secret of the guessed client id is refused too: guessing learns nothing more.
    assert token_request(client, issued.credential.api_key, issued.client_secret).status_code == 429
    other = services.create_api_credential(organization=organization)
    answer = token_request(client, other.credential.api_key, other.client_secret)
    assert answer.status_code == 200 and answer.json()["access_token"]


def test_successes_are_never_counted(client, issued):
    for _ in range(15):
        assert token_request(client, issued.credential.api_key, issued.client_secret).status_code == 200


def test_one_address_guessing_many_client_ids_is_slowed_down(client, issued, settings, one_minute):
    settings.TOKEN_FAILURES_PER_ADDRESS = 5
    for number in range(5):
        assert token_request(client, f"guess-{number}", "wrong").status_code == 401
    assert token_request(client, "guess-6", "wrong").status_code == 429
    assert token_request(client, issued.credential.api_key, issued.client_secret).status_code == 429
    assert (
        token_request(client, issued.credential.api_key, issued.client_secret, "198.51.100.1").status_code
        == 200
    )


def test_the_beat_purges_expired_tokens_and_past_failure_windows(client, issued, settings):
    import datetime as dt

    from django.utils import timezone

    from campaign.models import FailureWindow
    from campaign.tasks import purge

    assert "campaign.purge" in {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert token_request(client, issued.credential.api_key, "wrong").status_code == 401
    assert token_request(client, issued.credential.api_key, issued.client_secret).status_code == 200
    AccessToken.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    FailureWindow.objects.update(window=timezone.now() - dt.timedelta(minutes=2))
    assert purge() == {"tokens": 1, "failure_windows": 2}
    assert not AccessToken.objects.exists() and not FailureWindow.objects.exists()
