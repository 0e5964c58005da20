"""Enrichment: profile and custom-resource joins (events.enrichment), in the worker's batches, the
configuration file and the publication's rules."""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
import re
from pathlib import Path

import pytest
from django.core import mail
from django.db import connection
from django.db.models import RestrictedError
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaign import generations
from campaign.models import CustomResource, CustomResourceRow
from campaign.resources import import_resource_csv
from events import pipeline
from events.admin import EnrichmentInline
from events.configuration_file import ConfigurationFileError, export_organization, import_file
from events.models import Event
from events.schema import validate_event
from events.services import ingest
from messages.channels import backend_for
from tests.admin_forms import change_form_data
from tests.conftest import publish_events
from tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db
FUTURE = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.000Z")
CATALOGUE = "sku,title,image\nSKU-1,Leather jacket,https://img.example/1.png\nSKU-2,Helmet,https://img.example/2.png\n"

CART = {
    "name": "cartReminder",
    "channel": "email",
    "targeting": "event",
    "fields": [{"name": "firstName", "type": "text"}, {"name": "customer", "type": "email"}],
    "collections": [
        {
            "name": "items",
            "fields": [{"name": "sku", "type": "text"}, {"name": "quantity", "type": "integer"}],
        }
    ],
    "enrichments": [
        {"kind": "resource", "collection": "items", "field": "sku", "resource": "product"},
        {"kind": "profile", "eventField": "customer", "profileField": "email"},
    ],
    "message": {
        "subject": "{{ ctx.firstName }}, your cart is waiting",
        "html": "<p>Hello {{ profile.firstName }}</p>"
        "{% for item in ctx.items %}<p>[{{ item.product.title }}] x {{ item.quantity }}</p>{% endfor %}",
    },
}


@pytest.fixture
def catalogue(organization):
    return import_resource_csv(
        organization=organization, name="product", key="sku", handle=io.StringIO(CATALOGUE)
    )


def cart(organization, **changes):
    event = copy.deepcopy(CART)
    event.update(changes)
    return publish_events(organization, event)[0]


def accept(configuration, ctx, email="buyer@example.com") -> Event:
    body = {"email": email, "expiration": FUTURE, "ctx": ctx}
    event, _ = ingest(
        configuration=configuration, validated=validate_event(configuration.published_schema, body)
    )
    return event


def items(*skus: str) -> list[dict]:
    return [{"sku": sku, "quantity": 1} for sku in skus]


def reason(event: Event) -> str:
    return event.status_changes.order_by("-id").first().reason


def test_items_show_their_product_titles_and_a_missing_row_renders_empty(organization, catalogue):
    configuration = cart(organization)
    event = accept(configuration, {"firstName": "Jack", "items": items("SKU-2", "SKU-404", "SKU-1")})
    assert pipeline.process(event.pk) == "processed"
    html = mail.outbox[0].alternatives[0][0]
    assert "[Helmet] x 1" in html and "[] x 1" in html and "[Leather jacket] x 1" in html
    assert html.index("Helmet") < html.index("Leather jacket")  # the items' order


def test_a_required_join_without_a_row_ends_targeting_failed_with_the_reason(organization, catalogue):
    enrichments = copy.deepcopy(CART["enrichments"])
    enrichments[0]["required"] = True
    configuration = cart(organization, enrichments=enrichments)
    event = accept(configuration, {"firstName": "Jack", "items": items("SKU-1", "SKU-404")})
    assert pipeline.process(event.pk) == "targetingFailed"
    event.refresh_from_db()
    assert event.status == "targetingFailed" and mail.outbox == []
    assert reason(event) == (
        "the resource product has no row 'SKU-404' (ctx.items[1].sku, required enrichment)"
    )
    assert [c.to_status for c in event.status_changes.all()] == ["processing", "targetingFailed"]


def test_a_profile_join_gives_an_event_based_message_the_profiles_fields_without_targeting_it(
    organization, catalogue
):
    ProfileFactory(organization=organization, email="jane@example.com", first_name="Jane")
    configuration = cart(organization)
    event = accept(configuration, {"customer": "JANE@example.com", "items": items("SKU-1")})
    assert pipeline.process(event.pk) == "processed"
    (sent,) = mail.outbox
    assert sent.to == ["buyer@example.com"]  # the event's recipient, not the profile's
    assert "Hello Jane" in sent.alternatives[0][0]
    assert "List-Unsubscribe" not in sent.extra_headers  # not a profile-based message
    event.refresh_from_db()
    assert event.profile_id is None  # never counted as the profile's (fatigue, reports)
    nobody = accept(configuration, {"customer": "nobody@example.com", "items": []})
    assert pipeline.process(nobody.pk) == "processed"
    assert "<p>Hello </p>" in mail.outbox[1].alternatives[0][0]


def test_a_required_profile_join_without_a_profile_ends_targeting_failed(organization, catalogue):
    enrichments = copy.deepcopy(CART["enrichments"])
    enrichments[1]["required"] = True
    configuration = cart(organization, enrichments=enrichments)
    event = accept(configuration, {"customer": "nobody@example.com"})
    assert pipeline.process(event.pk) == "targetingFailed"
    event.refresh_from_db()
    assert reason(event) == "no profile has email = ctx.customer (required enrichment)"


def batch_queries(configuration, *, items_per_event: int) -> tuple[int, list[str]]:
    skus = [f"SKU-{1 + n % 2}" for n in range(items_per_event)]
    events = [
        accept(
            configuration, {"customer": f"p{n}@example.com", "items": items(*skus)}, email=f"b{n}@example.com"
        )
        for n in range(20)
    ]
    with CaptureQueriesContext(connection) as queries:
        done = pipeline.process_batch([events[0].pk], limit=20)
    assert list(done.values()) == ["processed"] * 20
    statements = [query["sql"] for query in queries.captured_queries]
    return len(statements), statements


def test_a_batch_of_20_events_reads_the_catalogue_once_whatever_the_number_of_items(
    organization, catalogue, settings
):
    settings.EVENT_CLAIM_BATCH = 20
    for n in range(20):
        ProfileFactory(organization=organization, email=f"p{n}@example.com", first_name=f"P{n}")
    configuration = cart(organization)
    # What a process reads once, not per batch (the caches' generations, at most every
    # GENERATION_CHECK_SECONDS; the organization's own providers) is read before the two batches.
    settings.GENERATION_CHECK_SECONDS = 3600
    generations.forget_checks()
    backend_for(configuration.channel, organization.id)
    few, _ = batch_queries(configuration, items_per_event=1)
    mail.outbox.clear()
    many, statements = batch_queries(configuration, items_per_event=10)
    rows = [sql for sql in statements if "campaign_customresourcerow" in sql]
    profiles = [sql for sql in statements if 'FROM "campaign_profile"' in sql]
    assert len(rows) == 1 and len(profiles) == 1  # one query per batch, not per event or item
    assert many == few  # 200 items cost what 20 do
    # The reads of the batch are a few, whatever its events and items (claims, events, their
    # configuration, the quarantine, the catalogue, the profiles); recording writes each event's
    # outcome (one statement per group on PostgreSQL, a few per event on SQLite).
    reads = [sql for sql in statements if sql.lstrip().upper().startswith("SELECT")]
    assert len(reads) <= 10, reads
    assert many <= 10 + 6 * 20
    assert all("Leather jacket" in m.alternatives[0][0] for m in mail.outbox)
    assert sorted(m.alternatives[0][0].split("Hello ")[1].split("<")[0] for m in mail.outbox) == sorted(
        f"P{n}" for n in range(20)
    )


# --- The publication's rules, and the configuration file -------------------------------------------


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"resource": "nothing"}, "enrichments[0].resource: no custom resource 'nothing' in geometrixx"),
        ({"field": "ean"}, "the enrichment's key field 'ean' is not a field of items"),
        ({"collection": "lines"}, "the enrichment's collection 'lines' is not a collection of the event"),
        ({"name": "quantity"}, "the enrichment's name 'quantity' is a field of items already"),
        ({"kind": "catalogue"}, "enrichments[0].kind: 'catalogue' is not a kind of enrichment"),
        ({"required": "yes"}, "enrichments[0].required: true or false"),
    ],
)
def test_a_join_that_does_not_fit_the_event_rejects_the_file(organization, catalogue, change, said):
    enrichments = copy.deepcopy(CART["enrichments"])
    enrichments[0].update(change)
    with pytest.raises(ConfigurationFileError) as error:
        cart(organization, enrichments=enrichments)
    assert "event cartReminder" in str(error.value)
    assert said.lower() in str(error.value).lower()


def test_a_profile_join_is_for_event_based_messages_only(organization, catalogue):
    with pytest.raises(ConfigurationFileError, match="A profile enrichment is for event-based messages"):
        cart(
            organization,
            targeting="profile",
            reconciliation={"eventField": "customer", "profileField": "email"},
        )


def test_a_template_naming_an_item_field_no_join_provides_is_refused(organization, catalogue):
    message = {**CART["message"], "html": "{% for item in ctx.items %}{{ item.produkt.title }}{% endfor %}"}
    with pytest.raises(ConfigurationFileError, match="'item.produkt' is not a field of this collection"):
        cart(organization, message=message)
    without_profile_join = [CART["enrichments"][0]]
    with pytest.raises(ConfigurationFileError, match="'profile' is only available"):
        cart(organization, enrichments=without_profile_join)


def test_export_carries_the_enrichments_and_imports_again_unchanged(organization, catalogue):
    enrichments = copy.deepcopy(CART["enrichments"])
    enrichments[0].update(name="article", required=True)
    message = {**CART["message"], "html": CART["message"]["html"].replace("item.product", "item.article")}
    cart(organization, enrichments=enrichments, message=message)
    exported = export_organization(organization)
    (entry,) = exported["events"]
    assert entry["enrichments"] == [
        {
            "kind": "resource",
            "collection": "items",
            "field": "sku",
            "resource": "product",
            "name": "article",
            "required": True,
        },
        {"kind": "profile", "eventField": "customer", "profileField": "email", "required": False},
    ]
    import_file(exported)
    assert export_organization(organization) == exported


def readme_block(language: str, containing: str) -> str:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)
    (block,) = [b for b in blocks if containing in b]
    return block


def test_the_readmes_worked_example_sends_titles_and_images_from_the_catalogue(organization):
    import_resource_csv(
        organization=organization,
        name="product",
        key="sku",
        handle=io.StringIO(readme_block("csv", "sku,title,image")),
    )
    (configuration,) = import_file(json.loads(readme_block("json", "cartReminder")), publish=True)
    ProfileFactory(organization=organization, email="jack@example.com", first_name="Jacky")
    ctx = {
        "firstName": "Jack",
        "customer": "jack@example.com",
        "items": [{"sku": "SKU-1", "quantity": 1}, {"sku": "SKU-2", "quantity": 2}],
    }
    event = accept(configuration, ctx, email="jack@example.com")
    assert pipeline.process(event.pk) == "processed"
    (sent,) = mail.outbox
    html = sent.alternatives[0][0]
    assert sent.subject == "Jacky, your cart is waiting"
    assert "Leather jacket × 1" in html and "Helmet × 2" in html
    assert 'src="https://shop.geometrixx.example/img/helmet.png"' in html
    unknown = accept(configuration, {**ctx, "items": [{"sku": "SKU-9", "quantity": 1}]})
    assert pipeline.process(unknown.pk) == "targetingFailed"


# --- The event type's page -------------------------------------------------------------------------


def test_administrators_add_a_join_on_the_event_types_page_with_their_organizations_resources_only(
    client, administrator, organization, cart_configuration, catalogue, other_organization
):
    foreign = import_resource_csv(
        organization=other_organization, name="anvils", key="sku", handle=io.StringIO("sku\nA\n")
    )
    client.force_login(administrator)
    url = f"/admin/events/eventconfiguration/{cart_configuration.pk}/change/"
    page = client.get(url)
    html = page.content.decode()
    assert "product" in html and "anvils" not in html
    data = change_form_data(page, _save="Save")
    join = {
        "kind": "resource",
        "collection": "products",
        "event_field": "sku",
        "name": "item",
        "required": "on",
    }
    data.update({"enrichments-TOTAL_FORMS": "1", **{f"enrichments-0-{k}": v for k, v in join.items()}})
    refused = client.post(url, {**data, "enrichments-0-resource": str(foreign.pk)})
    assert refused.status_code == 200 and "Select a valid choice" in refused.content.decode()
    incomplete = client.post(url, {**data, "enrichments-0-resource": ""})
    assert "Choose the custom resource" in incomplete.content.decode()
    saved = client.post(url, {**data, "enrichments-0-resource": str(catalogue.pk)})
    assert saved.status_code == 302
    assert "changes that are not published yet" in client.get(url).content.decode()
    client.post(url, change_form_data(client.get(url), _publish="Save and republish"))
    cart_configuration.refresh_from_db()
    assert cart_configuration.published_schema["enrichments"] == [
        {
            "kind": "resource",
            "collection": "products",
            "field": "sku",
            "resource": "product",
            "resourceId": catalogue.pk,
            "name": "item",
            "required": True,
        }
    ]


def test_marketers_do_not_edit_joins(client, marketer, cart_configuration):
    client.force_login(marketer)
    assert client.get(f"/admin/events/eventconfiguration/{cart_configuration.pk}/change/").status_code == 403
    assert client.get("/admin/events/profilesample/").status_code == 403
    assert client.get("/admin/campaign/customresource/").status_code == 403


def test_a_joined_resource_stays_while_joined_and_goes_with_its_organization(organization, catalogue):
    cart(organization)
    with pytest.raises(RestrictedError):
        catalogue.delete()
    organization.delete()  # its event types, their joins and its resources, all at once
    assert not CustomResource.objects.exists() and not CustomResourceRow.objects.exists()


def test_a_profile_join_on_an_imported_profile_field(organization, catalogue):
    ProfileFactory(
        organization=organization, email="a@example.com", first_name="Ann", data={"customerId": "C-7"}
    )
    ProfileFactory(
        organization=organization, email="b@example.com", first_name="Bob", data={"customerId": "C-8"}
    )
    fields = [{"name": "firstName", "type": "text"}, {"name": "customer", "type": "text"}]
    enrichments = [
        {"kind": "profile", "eventField": "customer", "profileField": "customerId", "required": True}
    ]
    message = {"subject": "Hi {{ profile.firstName }} ({{ profile.customerId }})", "html": "<p>Hi</p>"}
    configuration = cart(
        organization, fields=fields, enrichments=enrichments, collections=[], message=message
    )
    first = accept(configuration, {"customer": "C-8"})
    second = accept(configuration, {"customer": "C-7"})
    done = pipeline.process_batch([first.pk], limit=2)
    assert done == {first.pk: "processed", second.pk: "processed"}
    assert sorted(m.subject for m in mail.outbox) == ["Hi Ann (C-7)", "Hi Bob (C-8)"]


def test_over_smtp_a_batch_of_20_still_reads_the_catalogue_once(
    organization, catalogue, settings, smtp_email
):
    """The worker's way: the sends on sender threads, talking to a real SMTP server."""
    settings.EVENT_CLAIM_BATCH = 20
    configuration = cart(organization)
    _, statements = batch_queries(configuration, items_per_event=10)
    assert len([sql for sql in statements if "campaign_customresourcerow" in sql]) == 1
    assert len([sql for sql in statements if sql.lstrip().upper().startswith("SELECT")]) <= 10
    received = smtp_email.wait_for(20)
    assert all("[Leather jacket] x 1" in m.part("text/html") for m in received)


def test_joins_are_bounded_per_event_type(organization, catalogue):
    joins = [{**CART["enrichments"][0], "name": f"row{n}"} for n in range(21)]
    with pytest.raises(ConfigurationFileError, match="enrichments: at most 20"):
        cart(organization, enrichments=joins)
    assert EnrichmentInline.max_num == 20 and EnrichmentInline.validate_max


def test_the_editor_offers_the_joined_rows_columns_in_the_items_loop(
    client, marketer, organization, catalogue
):
    configuration = cart(organization)
    client.force_login(marketer)
    page = client.get(f"/admin/transactional/transactionalmessage/{configuration.message.pk}/change/")
    html = page.content.decode()
    assert "{{ item.product.title }} {{ item.product.image }}" in html
    assert "{{ item.product.sku }}" not in html  # the key: the item has it already
