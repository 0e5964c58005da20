"""End to end: a cart-abandonment email whose items show product titles from a catalogue resource
(HTTP in, the real worker, SMTP out), and a proof to a test profile that uses its own sample data."""

from __future__ import annotations

import copy
import io

import pytest
from django.contrib.auth.models import Group, Permission

from campaign.resources import import_resource_csv
from campaign.roles import MARKETERS, ROLE_NAMES, sync_roles
from events.models import ProfileSample
from messages.channels import backend_for
from tests.conftest import publish_events
from tests.e2e.stack import http
from tests.e2e.test_event_flow import FUTURE, final_status, post_event
from tests.events.test_enrichment import CART, CATALOGUE
from tests.factories import ProfileFactory, member

pytestmark = [pytest.mark.e2e]
URL = "/geometrixx/campaign/mcgeometrixx/EVTcartReminder"


@pytest.fixture
def catalogue_cart(geometrixx):
    import_resource_csv(organization=geometrixx, name="product", key="sku", handle=io.StringIO(CATALOGUE))
    return publish_events(geometrixx, copy.deepcopy(CART))[0]


def test_a_burst_of_cart_emails_shows_the_catalogues_titles(stack, geometrixx, catalogue_cart):
    ProfileFactory(organization=geometrixx, email="jane@example.com", first_name="Jane")
    headers = stack.token_headers(geometrixx)
    pkeys = [
        post_event(
            stack,
            headers,
            {
                "email": f"buyer{n}@example.com",
                "expiration": FUTURE,
                "ctx": {
                    "firstName": f"Buyer{n}",
                    "customer": "jane@example.com",
                    "items": [{"sku": "SKU-1", "quantity": n}, {"sku": "SKU-2", "quantity": 1}],
                },
            },
            url=URL,
        )
        for n in range(20)
    ]
    received = stack.mailbox.wait_for(20)
    assert sorted(m.recipients[0] for m in received) == sorted(f"buyer{n}@example.com" for n in range(20))
    for message in received:
        html = message.part("text/html")
        assert "[Leather jacket] x" in html and "[Helmet] x 1" in html and "Hello Jane" in html
    assert {final_status(stack, headers, pkey, url=URL) for pkey in pkeys} == {"processed"}


def test_a_required_catalogue_row_that_is_missing_fails_targeting_and_sends_nothing(stack, geometrixx):
    import_resource_csv(organization=geometrixx, name="product", key="sku", handle=io.StringIO(CATALOGUE))
    event = copy.deepcopy(CART)
    event["enrichments"][0]["required"] = True
    publish_events(geometrixx, event)
    headers = stack.token_headers(geometrixx)
    body = {
        "email": "buyer@example.com",
        "expiration": FUTURE,
        "ctx": {"items": [{"sku": "GONE", "quantity": 1}]},
    }
    pkey = post_event(stack, headers, body, url=URL)
    assert final_status(stack, headers, pkey, url=URL) == "targetingFailed"
    status, answer = http("GET", f"{stack.base_url}{URL}/{pkey}", headers=headers)
    assert status == 200 and answer["status"] == "targetingFailed"
    assert stack.mailbox.to("buyer@example.com") == []


@pytest.fixture
def proofs_over_smtp(settings, smtp):
    """The test process's proofs go to the stack's SMTP server, as the web process's would."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    backend_for.cache_clear()
    yield smtp.mailbox
    backend_for.cache_clear()


def test_a_proof_to_a_test_profile_uses_its_sample_data(
    stack, geometrixx, catalogue_cart, client, proofs_over_smtp
):
    tester = ProfileFactory(
        organization=geometrixx, email="tess@example.com", first_name="Tess", is_test=True
    )
    ProfileSample.objects.create(
        profile=tester,
        configuration=catalogue_cart,
        ctx={"firstName": "Tess", "customer": "tess@example.com", "items": [{"sku": "SKU-2", "quantity": 3}]},
    )
    # A transactional test flushes the tables, and with them the roles the data migration made.
    if Group.objects.filter(name__in=ROLE_NAMES).count() != len(ROLE_NAMES):
        sync_roles(Group, Permission)
    client.force_login(member(organization=geometrixx, role=MARKETERS))
    proof_url = f"/admin/transactional/transactionalmessage/{catalogue_cart.message.pk}/proof/"
    response = client.post(proof_url, {"addresses": "", "profiles": [tester.pk], "ctx": ""})
    assert response.status_code == 302
    (proof,) = proofs_over_smtp.wait_for(1)
    assert proof.recipients == ["tess@example.com"]
    assert proof.subject == "[Proof] Tess, your cart is waiting"
    html = proof.part("text/html")
    assert "[Helmet] x 3" in html  # its own sample data, joined to the catalogue
    assert "Hello Tess" in html  # its profile's fields
