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
