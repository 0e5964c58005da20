"""Shared fixtures: an organization with the seed's cartAbandonment event published, an API client
with real credentials, and the roles' users."""

from __future__ import annotations

import copy
import io
import logging

import pytest
from rest_framework.test import APIClient

from campaign import services as campaign_services
from campaign.roles import ADMINISTRATORS, MARKETERS
from events.configuration_file import import_file
from tests.cli import cli, cli_template  # noqa: F401 (fixtures of the command-line tests)
from tests.factories import OrganizationFactory, member

SEED_BODY = {
    "email": "test@example.com",
    "scheduled": "2017-12-01 08:00:00.768Z",
    "expiration": "2017-12-31 08:00:00.768Z",
    "ctx": {"cartAmount": "$ 125", "lastProduct": "Leather motorbike jacket", "firstName": "Jack"},
}

CART_EVENT = {
    "name": "cartAbandonment",
    "label": "Cart abandonment",
    "channel": "email",
    "targeting": "event",
    "fields": [
        {"name": "firstName", "type": "text"},
        {"name": "cartAmount", "type": "text"},
        {"name": "lastProduct", "type": "text"},
    ],
    "collections": [
        {
            "name": "products",
            "fields": [{"name": "sku", "type": "text"}, {"name": "price", "type": "decimal"}],
        }
    ],
    "message": {
        "subject": "{{ ctx.firstName }}, your cart is waiting",
        "html": "<p>Hello {{ ctx.firstName }}</p><p>{{ ctx.lastProduct }}</p>"
        "{% for p in ctx.products %}<p>{{ p.sku }}</p>{% endfor %}",
        "text": "Hello {{ ctx.firstName }}, you left {{ ctx.lastProduct }} ({{ ctx.cartAmount }}).",
    },
}


def seed_body(**overrides) -> dict:
    body = copy.deepcopy(SEED_BODY)
    body.update(overrides)
    return body


@pytest.fixture
def organization(db):
    return OrganizationFactory(slug="geometrixx", name="Geometrixx")


@pytest.fixture
def other_organization(db):
    return OrganizationFactory(slug="acme", name="Acme")


def publish_events(organization, *events) -> list:
    return import_file({"organization": organization.slug, "events": list(events)}, publish=True)


@pytest.fixture
def cart_configuration(organization):
    return publish_events(organization, copy.deepcopy(CART_EVENT))[0]


def api_client_for(organization) -> APIClient:
    issued = campaign_services.create_api_credential(organization=organization, name="tests")
    token = campaign_services.issue_access_token(
        api_key=issued.credential.api_key, client_secret=issued.client_secret
    )
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {token.access_token}", HTTP_X_API_KEY=issued.credential.api_key
    )
    client.credential = issued.credential
    return client


@pytest.fixture
def api(organization) -> APIClient:
    return api_client_for(organization)


@pytest.fixture
def administrator(organization):
    return member(organization=organization, role=ADMINISTRATORS)


@pytest.fixture
def marketer(organization):
    return member(organization=organization, role=MARKETERS)


CART_URL = "/geometrixx/campaign/mcgeometrixx/EVTcartAbandonment"


@pytest.fixture(autouse=True)
def _fresh_cache():
    from django.core.cache import cache

    from campaign import generations

    # A test's rollback takes generations back to 0: what this process remembers of them must go too.
    cache.clear()
    generations.forget_checks()
    yield
    cache.clear()
    generations.forget_checks()


@pytest.fixture
def smtp_server():
    from tests.smtp import SmtpServer

    with SmtpServer() as server:
        yield server


@pytest.fixture
def smtp_email(settings, smtp_server):
    """Send this test's email over SMTP to the loopback server, on a fresh connection."""
    from messages.channels import backend_for

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp_server.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    backend_for.cache_clear()
    yield smtp_server.mailbox
    backend_for.cache_clear()


@pytest.fixture
def console():
    """What the configured console handler writes (the one production logs go through)."""
    from campaign.privacy import MaskAddressesFilter

    (handler,) = [
        h for h in logging.getLogger().handlers if any(isinstance(f, MaskAddressesFilter) for f in h.filters)
    ]
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)


PROVIDERS_REDIS_DB = 9  # the providers' tests' own database of the test session's Redis server


@pytest.fixture
def providers_redis(settings):
    """The providers' shared state (messages.providers) in a Redis database of this test session's
    own server (tests.e2e.stack), emptied before and after: no other test uses that database."""
    import redis

    from messages import providers
    from messages.channels import backend_for
    from tests.e2e.stack import redis_url

    url = redis_url().rsplit("/", 1)[0] + f"/{PROVIDERS_REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    settings.PROVIDERS_REDIS_URL = url
    providers.forget_state()
    backend_for.cache_clear()
    yield url
    providers.forget_state()
    backend_for.cache_clear()
    client.flushdb()
    client.close()
