"""Test profiles' sample data: checked with the API's rules, used by previews and proofs for them."""

from __future__ import annotations

import io
import json

import pytest
from django.core import mail

from campaign.resources import import_resource_csv
from events.models import ProfileSample
from events.schema import SchemaError
from events.services import checked_profile_sample
from messages import services as message_services
from tests.events.test_enrichment import CART, CATALOGUE, cart
from tests.factories import OrganizationFactory, ProfileFactory

pytestmark = pytest.mark.django_db
SAMPLE = {"firstName": "Tess", "items": [{"sku": "SKU-2", "quantity": 2}]}


@pytest.fixture
def configuration(organization):
    import_resource_csv(organization=organization, name="product", key="sku", handle=io.StringIO(CATALOGUE))
    return cart(organization)


@pytest.fixture
def tester(organization):
    return ProfileFactory(
        organization=organization, email="tess@example.com", first_name="Tess", is_test=True
    )


@pytest.mark.parametrize(
    ("ctx", "field", "said"),
    [
        ({"items": [{"sku": "SKU-1", "quantity": "two"}]}, "ctx.items[0].quantity", "must be an integer"),
        ({"nickname": "T"}, "ctx.nickname", "is not a field of this event"),
        ({"customer": "not-an-address"}, "ctx.customer", "is not an email address"),
        ({"firstName": "x" * 20_000}, "ctx.firstName", "characters"),
        ([1, 2], "ctx", "must be an object"),
    ],
)
def test_sample_data_the_api_would_refuse_names_the_field(configuration, tester, ctx, field, said):
    with pytest.raises(SchemaError) as error:
        checked_profile_sample(profile=tester, configuration=configuration, ctx=ctx)
    assert error.value.field == field and said in error.value.message


def test_sample_data_is_for_test_profiles_of_the_same_organization(configuration, tester):
    plain = ProfileFactory(organization=configuration.organization, email="plain@example.com")
    with pytest.raises(SchemaError, match="test profiles only"):
        checked_profile_sample(profile=plain, configuration=configuration, ctx={})
    stranger = ProfileFactory(organization=OrganizationFactory(slug="acme"), is_test=True)
    with pytest.raises(SchemaError, match="different organizations"):
        checked_profile_sample(profile=stranger, configuration=configuration, ctx={})
    assert checked_profile_sample(profile=tester, configuration=configuration, ctx=SAMPLE) == SAMPLE


def test_administrators_edit_sample_data_with_field_errors_and_test_profiles_only(
    client, administrator, configuration, tester
):
    ProfileFactory(organization=configuration.organization, email="plain@example.com")
    client.force_login(administrator)
    page = client.get(f"/admin/events/profilesample/add/?configuration={configuration.pk}").content.decode()
    assert "tess@example.com" in page and "plain@example.com" not in page
    assert "Firstname value" in page or "FirstName value" in page  # starts from generated sample data
    bad = {"profile": tester.pk, "configuration": configuration.pk}
    refused = client.post(
        "/admin/events/profilesample/add/", {**bad, "ctx": '{"items": [{"quantity": "x"}]}'}
    )
    assert refused.status_code == 200
    assert "ctx.items[0].quantity: must be an integer" in refused.content.decode()
    malformed = client.post("/admin/events/profilesample/add/", {**bad, "ctx": "{nope"})
    assert "Malformed JSON" in malformed.content.decode()
    saved = client.post("/admin/events/profilesample/add/", {**bad, "ctx": json.dumps(SAMPLE)})
    assert saved.status_code == 302
    assert ProfileSample.objects.get().ctx == SAMPLE


def test_a_proof_to_a_test_profile_uses_its_sample_data_and_fields_others_the_forms(
    configuration, tester, settings
):
    ProfileSample.objects.create(profile=tester, configuration=configuration, ctx=SAMPLE)
    other = ProfileFactory(
        organization=configuration.organization, email="otto@example.com", first_name="Otto", is_test=True
    )
    message = configuration.message
    message_services.send_proof(
        message=message,
        addresses=[],
        profiles=[tester, other],
        ctx={"firstName": "Form", "items": [{"sku": "SKU-1", "quantity": 1}]},
    )
    by_recipient = {m.to[0].split("<")[-1].rstrip(">"): m for m in mail.outbox}
    tess, otto = by_recipient["tess@example.com"], by_recipient["otto@example.com"]
    assert tess.subject == "[Proof] Tess, your cart is waiting"
    assert "[Helmet] x 2" in tess.alternatives[0][0]  # its sample data, joined to the catalogue
    assert otto.subject == "[Proof] Form, your cart is waiting"
    assert "[Leather jacket] x 1" in otto.alternatives[0][0]


def test_a_sample_that_no_longer_fits_the_event_refuses_the_proof_naming_the_field(configuration, tester):
    ProfileSample.objects.create(profile=tester, configuration=configuration, ctx={"gone": 1})
    with pytest.raises(message_services.ProofError, match="ctx.gone: is not a field of this event"):
        message_services.send_proof(message=configuration.message, addresses=[], profiles=[tester])
    assert mail.outbox == []


def test_the_preview_as_a_test_profile_renders_its_sample_data_and_fields(
    client, marketer, configuration, tester
):
    ProfileSample.objects.create(profile=tester, configuration=configuration, ctx=SAMPLE)
    client.force_login(marketer)
    preview = f"/admin/transactional/transactionalmessage/{configuration.message.pk}/preview/"
    page = client.get(preview).content.decode()
    assert "tess@example.com" in page  # a choice of test profile
    page = client.post(preview, {"ctx": "", "profile": tester.pk}).content.decode()
    assert "Tess, your cart is waiting" in page and "[Helmet] x 2" in page
    assert CART["name"] in page


def test_each_page_of_samples_and_resources_opens_for_administrators(
    client, administrator, configuration, tester
):
    sample = ProfileSample.objects.create(profile=tester, configuration=configuration, ctx=SAMPLE)
    resource = configuration.enrichments.get(kind="resource").resource
    row = resource.rows.first()
    client.force_login(administrator)
    for path in (
        "/admin/events/profilesample/",
        "/admin/events/profilesample/add/",
        f"/admin/events/profilesample/{sample.pk}/change/",
        f"/admin/campaign/customresource/{resource.pk}/change/",
        f"/admin/campaign/customresourcerow/?resource__id__exact={resource.pk}",
        f"/admin/campaign/customresourcerow/{row.pk}/change/",
        f"/admin/events/eventconfiguration/{configuration.pk}/change/",
    ):
        assert client.get(path).status_code == 200, path
    page = client.get(f"/admin/events/profilesample/{sample.pk}/change/").content.decode()
    assert "&quot;Tess&quot;" in page  # the JSON as it was saved


def test_sample_data_is_bounded_by_the_apis_body_size(client, administrator, configuration, tester, settings):
    settings.API_MAX_BODY_BYTES = 100
    big = {"firstName": "x" * 120}
    with pytest.raises(SchemaError, match="at most 100 bytes") as error:
        checked_profile_sample(profile=tester, configuration=configuration, ctx=big)
    assert error.value.field == "ctx"
    client.force_login(administrator)
    data = {"profile": tester.pk, "configuration": configuration.pk, "ctx": json.dumps(big)}
    refused = client.post("/admin/events/profilesample/add/", data)
    assert "At most 100 characters" in refused.content.decode()
    assert not ProfileSample.objects.exists()
