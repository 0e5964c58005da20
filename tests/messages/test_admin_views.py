"""The marketer's preview, proof and versions pages in the admin."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone
from django.utils.html import strip_tags

from campaign.models import ProofRecipient
from events import publication
from events.models import Event
from messages import services
from messages.models import Delivery
from tests.conftest import publish_events
from tests.factories import OrganizationFactory, ProfileFactory, member

pytestmark = pytest.mark.django_db


def url(message, page: str) -> str:
    return f"/admin/transactional/transactionalmessage/{message.pk}/{page}/"


def test_preview_shows_the_draft_rendered_with_editable_sample_data(client, marketer, cart_configuration):
    message = cart_configuration.message
    message.subject = "Draft for {{ ctx.firstName }}"
    services.save_draft(message=message)
    client.force_login(marketer)
    page = client.get(url(message, "preview")).content.decode()
    assert "Draft for FirstName value" in page and 'sandbox=""' in page
    ctx = {"firstName": "<Zoé>", "products": [{"sku": "SKU-1", "price": 9.5}]}
    page = client.post(url(message, "preview"), {"ctx": json.dumps(ctx)}).content.decode()
    assert "Draft for &lt;Zoé&gt;" in page and "SKU-1" in page
    bad = client.post(url(message, "preview"), {"ctx": "{not json"}).content.decode()
    assert "Malformed JSON" in bad
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    ("ctx", "field"),
    [
        ('{"firstName": 5}', "ctx.firstName"),
        ('{"products": "notalist"}', "ctx.products"),
        ('{"products": [{"price": NaN}]}', "ctx.products[0].price"),
        ('{"products": [{"price": 1e99999999}]}', "ctx.products[0].price"),
        ('{"firstName": "a\\u0000b"}', "ctx.firstName"),
    ],
)
def test_preview_sample_data_keeps_the_apis_rules(client, marketer, cart_configuration, ctx, field):
    client.force_login(marketer)
    page = client.post(url(cart_configuration.message, "preview"), {"ctx": ctx}).content.decode()
    assert f"{field}:" in page
    assert "built-in method" not in page


def test_sms_preview_counts_characters_encoding_and_segments(client, marketer, organization):
    configuration = publish_events(
        organization,
        {
            "name": "otp",
            "channel": "sms",
            "fields": [{"name": "code", "type": "text"}],
            "message": {"text": "Votre code : {{ ctx.code }} — merci"},
        },
    )[0]
    client.force_login(marketer)
    page = client.post(url(configuration.message, "preview"), {"ctx": '{"code": "1234"}'}).content.decode()
    assert "Votre code : 1234" in page
    assert "UCS-2" in page and "1 segment" in page  # the dash is not in GSM-7


def test_proof_page_sends_to_test_profiles_and_allow_listed_addresses(
    client, marketer, cart_configuration, smtp_email
):
    organization = cart_configuration.organization
    ProofRecipient.objects.create(organization=organization, kind="email", value="qa@example.com")
    ProofRecipient.objects.create(organization=organization, kind="domain", value="agency.example")
    tester = ProfileFactory(organization=organization, email="tester@example.com", is_test=True)
    client.force_login(marketer)
    response = client.post(
        url(cart_configuration.message, "proof"),
        {"addresses": "qa@example.com, lead@agency.example", "profiles": [tester.pk], "ctx": ""},
    )
    assert response.status_code == 302
    received = smtp_email.wait_for(3)
    assert sorted(m.recipients[0] for m in received) == [
        "lead@agency.example",
        "qa@example.com",
        "tester@example.com",
    ]
    assert {m.subject for m in received} == {"[Proof] FirstName value, your cart is waiting"}
    assert Delivery.objects.filter(is_proof=True).count() == 3 and Event.objects.count() == 0
    error = client.post(url(cart_configuration.message, "proof"), {"addresses": "", "ctx": ""})
    assert error.content.decode().count("give at least one test address or test profile") == 1  # said once


def test_proof_page_lists_test_profiles_only(client, marketer, cart_configuration):
    organization = cart_configuration.organization
    ProfileFactory(organization=organization, email="tester@example.com", is_test=True)
    customer = ProfileFactory(organization=organization, email="customer@example.com")
    ProfileFactory(
        organization=OrganizationFactory(slug="acme"), email="their-tester@example.com", is_test=True
    )
    client.force_login(marketer)
    page = client.get(url(cart_configuration.message, "proof")).content.decode()
    assert "tester@example.com" in page
    assert "customer@example.com" not in page and "their-tester@example.com" not in page
    # Nor can a profile that is not listed be chosen by posting its id.
    answer = client.post(url(cart_configuration.message, "proof"), {"profiles": [customer.pk], "ctx": ""})
    assert answer.status_code == 200 and "Select a valid choice" in answer.content.decode()
    assert not Delivery.objects.exists()


def test_a_proof_to_an_address_that_is_not_a_test_one_is_a_form_error(client, marketer, cart_configuration):
    client.force_login(marketer)
    answer = client.post(
        url(cart_configuration.message, "proof"), {"addresses": "victim@elsewhere.example", "ctx": ""}
    )
    assert answer.status_code == 200
    assert (
        "&#x27;victim@elsewhere.example&#x27; is neither a test profile&#x27;s nor on the proof allow-list"
        in answer.content.decode()
    )
    assert not Delivery.objects.exists()


def test_the_eleventh_proof_of_a_minute_is_a_form_error(client, marketer, cart_configuration, settings):
    settings.PROOF_RATE_PER_MINUTE = 10
    ProofRecipient.objects.create(
        organization=cart_configuration.organization, kind="domain", value="agency.example"
    )
    client.force_login(marketer)
    proof = url(cart_configuration.message, "proof")
    for number in range(10):
        assert client.post(proof, {"addresses": f"qa{number}@agency.example", "ctx": ""}).status_code == 302
    answer = client.post(proof, {"addresses": "qa10@agency.example", "ctx": ""})
    assert answer.status_code == 200
    assert "at most 10 proofs a minute" in answer.content.decode()
    assert Delivery.objects.filter(is_proof=True).count() == 10


def test_a_push_proof_page_asks_for_registration_tokens_not_profiles(client, marketer, organization):
    configuration = publish_events(
        organization, {"name": "ping", "channel": "push", "message": {"title": "Hi", "body": "There"}}
    )[0]
    ProfileFactory(organization=organization, email="tester@example.com", is_test=True)
    client.force_login(marketer)
    page = client.get(url(configuration.message, "proof")).content.decode()
    assert "Registration tokens" in page and 'name="profiles"' not in page


def test_preview_and_proof_of_a_draft_beyond_the_bounds_say_which_bound_and_send_nothing(
    client, marketer, cart_configuration
):
    """A draft written around the form's check (or before it existed) is rendered within the bounds."""
    message = cart_configuration.message
    message.text = "{% for a in 'x' * 100000 %}{% for b in 'x' * 100000 %}{% endfor %}{% endfor %}"
    services.save_draft(message=message)
    ProofRecipient.objects.create(
        organization=message.configuration.organization, kind="email", value="qa@example.com"
    )
    client.force_login(marketer)
    preview = client.get(url(message, "preview")).content.decode()
    assert (
        "text: the template&#x27;s loops exceeded 100,000 iterations (RENDER_MAX_LOOP_ITERATIONS)" in preview
    )
    proof = client.post(url(message, "proof"), {"addresses": "qa@example.com", "ctx": ""})
    assert proof.status_code == 200
    assert (
        "The proof could not be rendered: text: the template&#x27;s loops exceeded" in proof.content.decode()
    )
    assert Delivery.objects.count() == 0


def test_versions_page_shows_differences_and_republishes_an_older_version(
    client, marketer, cart_configuration
):
    message = cart_configuration.message
    message.subject = "Version two"
    services.save_draft(message=message)
    publication.publish_message(message=message, user=marketer)
    client.force_login(marketer)
    page = client.get(url(message, "versions"), {"a": 1, "b": 2}).content.decode()
    assert "Version&nbsp;two" in page and "v2 (live)" in page and str(marketer) in page
    response = client.post(url(message, "versions/1/republish"))
    assert response.status_code == 302
    message.refresh_from_db()
    assert message.live_version.number == 3
    assert message.live_version.content["subject"] == "{{ ctx.firstName }}, your cart is waiting"


def test_another_organizations_marketer_cannot_reach_these_pages(
    client, cart_configuration, other_organization
):
    from campaign.roles import MARKETERS

    client.force_login(member(organization=other_organization, role=MARKETERS))
    for page in ("preview", "proof", "versions"):
        response = client.get(url(cart_configuration.message, page))
        assert response.status_code in (302, 404)
        assert "cart is waiting" not in response.content.decode()
    assert client.post(url(cart_configuration.message, "versions/1/republish")).status_code in (302, 404)
    cart_configuration.message.refresh_from_db()
    assert cart_configuration.message.live_version.number == 1


# --- Pause, Unpublish and Republish ask first, saying what will happen --------------------------


def queue_events(configuration, count: int) -> list[Event]:
    """`count` events accepted and waiting (pending), as the API leaves them."""
    from events.schema import validate_event
    from events.services import ingest
    from tests.conftest import seed_body

    future = (timezone.now() + dt.timedelta(days=1)).isoformat()
    return [
        ingest(
            configuration=configuration,
            validated=validate_event(
                configuration.published_schema, seed_body(scheduled=None, expiration=future)
            ),
        )[0]
        for _ in range(count)
    ]


def test_pause_asks_first_saying_the_queued_events_are_kept_paused(client, marketer, cart_configuration):
    message = cart_configuration.message
    queue_events(cart_configuration, 2)
    client.force_login(marketer)
    page = client.get(url(message, "pause"))
    assert page.status_code == 200
    text = " ".join(strip_tags(page.content.decode()).split())
    assert "2 queued events are kept, paused" in text and "Resume sends them" in text
    message.refresh_from_db()
    assert message.status == "published"  # asking changed nothing

    answer = client.post(url(message, "pause"))
    assert answer.status_code == 302 and answer.url == url(message, "change")
    message.refresh_from_db()
    assert message.status == "paused"
    assert set(Event.objects.values_list("status", flat=True)) == {"paused"}


def test_unpublish_asks_first_saying_the_endpoint_goes_down_and_queued_events_fail(
    client, marketer, cart_configuration
):
    message = cart_configuration.message
    queue_events(cart_configuration, 3)
    client.force_login(marketer)
    text = " ".join(strip_tags(client.get(url(message, "unpublish")).content.decode()).split())
    assert "The REST endpoint of EVTcartAbandonment goes down" in text
    assert "3 queued events (pending or paused) will fail (routingFailed)" in text
    cart_configuration.refresh_from_db()
    assert cart_configuration.is_published

    client.post(url(message, "unpublish"))
    cart_configuration.refresh_from_db()
    message.refresh_from_db()
    assert not cart_configuration.is_published and message.status == "draft"
    assert set(Event.objects.values_list("status", flat=True)) == {"routingFailed"}


def test_republish_asks_first_saying_the_unsaved_draft_is_replaced(client, marketer, cart_configuration):
    message = cart_configuration.message
    message.subject = "Version two"
    services.save_draft(message=message)
    publication.publish_message(message=message, user=marketer)
    message.subject = "Work in progress"
    services.save_draft(message=message)
    client.force_login(marketer)

    versions = client.get(url(message, "versions")).content.decode()
    assert f'href="{url(message, "versions/1/republish")}"' in versions  # a link to the question
    text = " ".join(strip_tags(client.get(url(message, "versions/1/republish")).content.decode()).split())
    assert "The draft is replaced by the content of v1: its changes that no version has are lost" in text
    message.refresh_from_db()
    assert message.subject == "Work in progress" and message.live_version.number == 2

    client.post(url(message, "versions/1/republish"))
    message.refresh_from_db()
    assert message.live_version.number == 3
    assert message.subject == "{{ ctx.firstName }}, your cart is waiting"


def test_republishing_a_version_that_does_not_exist_is_not_found(client, marketer, cart_configuration):
    client.force_login(marketer)
    assert client.get(url(cart_configuration.message, "versions/9/republish")).status_code == 404
    assert client.post(url(cart_configuration.message, "versions/9/republish")).status_code == 404


def test_sms_proof_numbers_are_checked_and_sent_in_e164(client, marketer, organization):
    configuration = publish_events(
        organization, {"name": "otp", "channel": "sms", "message": {"text": "Your code"}}
    )[0]
    ProofRecipient.objects.create(organization=organization, kind="phone", value="+14155550100")
    typo = ProfileFactory(
        organization=organization, email="typo@example.com", mobile_phone="abc", is_test=True
    )
    client.force_login(marketer)

    answer = client.post(url(configuration.message, "proof"), {"addresses": "abc", "ctx": ""})
    assert answer.status_code == 200 and "&#x27;abc&#x27; is not a phone number" in answer.content.decode()
    # A test profile saved before its phone was checked is refused, naming it.
    answer = client.post(url(configuration.message, "proof"), {"profiles": [typo.pk], "ctx": ""})
    assert answer.status_code == 200
    assert (
        "the test profile typo@example.com: &#x27;abc&#x27; is not a phone number" in answer.content.decode()
    )
    assert not Delivery.objects.exists()

    answer = client.post(url(configuration.message, "proof"), {"addresses": "+1 (415) 555-0100", "ctx": ""})
    assert answer.status_code == 302
    assert list(Delivery.objects.values_list("recipient", "outcome")) == [("+14155550100", "sent")]


def test_preview_sample_data_that_the_event_would_refuse_is_a_form_error_not_a_render(
    client, marketer, organization
):
    """The issue's case: a text field given a number and a collection given a string rendered
    `<built-in method title of str ...>`; the API's own validation now names the field."""
    configuration = publish_events(
        organization,
        {
            "name": "order",
            "fields": [{"name": "firstName", "type": "text"}],
            "collections": [{"name": "items", "fields": [{"name": "title", "type": "text"}]}],
            "message": {
                "subject": "Hi {{ ctx.firstName }}",
                "html": "{% for i in ctx.items %}<p>{{ i.title }}</p>{% endfor %}",
                "text": "Hi",
            },
        },
    )[0]
    client.force_login(marketer)
    for bad, field in (
        ({"firstName": 5, "items": "notalist"}, "ctx.firstName"),
        ({"items": "notalist"}, "ctx.items"),
    ):
        page = client.post(url(configuration.message, "preview"), {"ctx": json.dumps(bad)})
        form = page.context["form"]
        assert form.errors["ctx"][0].startswith(f"{field}: ")
        assert "built-in method" not in page.content.decode()
