"""The editor's live preview: the unsaved content rendered through the product's bounded renderer,
as JSON, for who may change the message in its organization; and the per-language variants' form
checks behind the editor."""

from __future__ import annotations

import copy
import json

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from campaign.models import Membership
from messages import services
from messages.channels.sms import sms_characters
from tests.conftest import CART_EVENT, publish_events
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

CHAINED_REPLACE = '{{ "aaaaaaaaaa"' + '|replace("a","aaaaaaaaaa")' * 9 + " }}"
NESTED_LOOPS = '{% for a in "x"*100000 %}{% for b in "x"*100000 %}{% endfor %}{% endfor %}'


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def live_url(message) -> str:
    return reverse("admin:transactional_transactionalmessage_live_preview", args=[message.pk])


def ask(client, message, *, content=None, ctx="", language=None, raw=None):
    if raw is None:
        raw = json.dumps({"content": content or {}, "ctx": ctx, "language": language})
    body = raw
    return client.post(live_url(message), body, content_type="application/json")


def errors_of(answer) -> list[dict]:
    return answer.json()["errors"]


CART_CONTENT = {
    "subject": "Unsaved {{ ctx.firstName }}",
    "html": "<p>Hi {{ ctx.firstName }}</p><script>alert(1)</script>",
    "text": "Text {{ ctx.lastProduct }}",
}


def test_the_unsaved_content_is_rendered_with_the_sample_data_and_nothing_is_saved(
    client, marketer, cart_configuration
):
    message = cart_configuration.message
    client.force_login(marketer)
    answer = ask(client, message, content=CART_CONTENT, ctx='{"firstName": "<Zoé>"}')
    assert answer.status_code == 200
    parts = {part["name"]: part for part in answer.json()["parts"]}
    assert parts["subject"]["value"] == "Unsaved <Zoé>"  # text: shown escaped by the page
    assert "<p>Hi &lt;Zoé&gt;</p>" in parts["html"]["value"]  # HTML: autoescaped
    assert parts["html"]["html"] and not parts["subject"]["html"]
    assert parts["text"]["value"] == "Text "  # no lastProduct in this sample data
    assert answer.json()["variantUsed"] == "Default content"
    # Without sample data: the event's generated sample data, as the preview page's.
    answer = ask(client, message, content=CART_CONTENT)
    assert {p["name"]: p["value"] for p in answer.json()["parts"]}["subject"] == "Unsaved FirstName value"
    message.refresh_from_db()
    assert message.subject == "{{ ctx.firstName }}, your cart is waiting"


def test_another_organizations_message_is_a_404(client, marketer, other_organization):
    event = {**copy.deepcopy(CART_EVENT), "name": "acmeSecret"}
    theirs = publish_events(other_organization, event)[0].message
    client.force_login(marketer)
    assert ask(client, theirs, content=CART_CONTENT).status_code == 404


def test_a_viewer_without_the_change_permission_is_refused(client, organization, cart_configuration):
    viewer = UserFactory()
    Membership.objects.create(user=viewer, organization=organization)
    viewer.user_permissions.add(Permission.objects.get(codename="view_transactionalmessage"))
    client.force_login(viewer)
    message = cart_configuration.message
    preview = reverse("admin:transactional_transactionalmessage_preview", args=[message.pk])
    assert client.get(preview).status_code == 200  # the preview page is the viewer's
    assert ask(client, cart_configuration.message, content=CART_CONTENT).status_code == 403


def test_only_a_post_with_its_csrf_token_is_answered(marketer, cart_configuration):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(marketer)
    assert client.get(live_url(cart_configuration.message)).status_code == 405
    assert ask(client, cart_configuration.message, content=CART_CONTENT).status_code == 403


@pytest.mark.parametrize(
    ("ctx", "field"),
    [
        ('{"firstName": 5}', "ctx.firstName"),
        ('{"products": "notalist"}', "ctx.products"),
        ('{"products": [{"price": 1e99999999}]}', "ctx.products[0].price"),
        ("{not json", "ctx"),
        ("[1, 2]", "ctx"),
    ],
)
def test_bad_sample_data_is_an_error_naming_the_field(client, marketer, cart_configuration, ctx, field):
    client.force_login(marketer)
    answer = ask(client, cart_configuration.message, content=CART_CONTENT, ctx=ctx)
    assert answer.status_code == 400
    (error,) = errors_of(answer)
    assert error["field"] == field and error["message"]
    assert "built-in method" not in answer.content.decode()


@pytest.mark.parametrize(
    ("content", "field", "says"),
    [
        ({"subject": CHAINED_REPLACE}, "subject", "RENDER_MAX_OUTPUT_CHARS"),
        ({"html": NESTED_LOOPS}, "html", "RENDER_MAX_LOOP_ITERATIONS"),
        (
            {"variants": {"fr": {"subject": CHAINED_REPLACE}}},
            "variants.fr.subject",
            "RENDER_MAX_OUTPUT_CHARS",
        ),
    ],
)
def test_a_template_beyond_a_bound_is_a_clear_error(
    client, marketer, cart_configuration, content, field, says
):
    client.force_login(marketer)
    language = "fr" if "variants" in content else None
    answer = ask(client, cart_configuration.message, content={**CART_CONTENT, **content}, language=language)
    assert answer.status_code == 400
    (error,) = errors_of(answer)
    assert error["field"] == field and says in error["message"]


def test_template_errors_name_the_part_and_the_line(client, marketer, cart_configuration):
    client.force_login(marketer)
    content = {**CART_CONTENT, "html": "<p>\n{% if %}\n</p>", "subject": "{{ ctx.prenom }}"}
    errors = errors_of(ask(client, cart_configuration.message, content=content))
    by_field = {error["field"]: error for error in errors}
    assert by_field["html"]["line"] == 2
    assert "prenom" in by_field["subject"]["message"]
    # A template the sample data breaks at render time: the part and line, not a 500.
    content = {**CART_CONTENT, "text": "a\n{{ ctx.firstName.upper() + 1 }}"}
    answer = ask(client, cart_configuration.message, content=content)
    assert answer.status_code == 400
    (error,) = errors_of(answer)
    assert error["field"] == "text" and error["line"] == 2 and "TypeError" in error["message"]


@pytest.mark.parametrize(
    ("raw", "field", "status"),
    [
        ("not json", "body", 400),
        ('{"content": {"subject": 5}}', "subject", 400),
        ('{"content": {"title": "x"}}', "title", 400),
        ('{"content": {"variants": []}}', "variants", 400),
        ('{"content": {"html": "a\\u0000b"}}', "html", 400),
        ('{"content": {"variants": {"fr": {"subject": "\\ud800"}}}}', "variants.fr.subject", 400),
        ('{"content": {}, "language": "xx-YY-zz"}', "language", 400),
        ('{"content": {}, "ctx": {"firstName": "Jo"}}', "ctx", 400),
        (json.dumps({"content": {"subject": "s" * 999}}), "subject", 400),
        (json.dumps({"content": {"variants": {"fr": {"subject": "s" * 999}}}}), "variants.fr.subject", 400),
    ],
)
def test_the_request_keeps_the_forms_bounds(client, marketer, cart_configuration, raw, field, status):
    client.force_login(marketer)
    answer = ask(client, cart_configuration.message, raw=raw)
    assert answer.status_code == status
    assert [error["field"] for error in errors_of(answer)] == [field]


def test_a_body_beyond_the_forms_upload_size_is_refused_before_it_is_read(
    client, marketer, cart_configuration, settings
):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    client.force_login(marketer)
    answer = ask(client, cart_configuration.message, content={"html": "x" * 2_000})
    assert answer.status_code == 413
    assert errors_of(answer)[0]["field"] == "body" and "1,000 bytes" in errors_of(answer)[0]["message"]


def test_the_language_chosen_renders_its_variant_with_the_products_fallback(client, marketer, organization):
    event = {
        **copy.deepcopy(CART_EVENT),
        "name": "multilingual",
        "fields": [*CART_EVENT["fields"], {"name": "AC_language", "type": "text"}],
    }
    message = publish_events(organization, event)[0].message
    content = {**CART_CONTENT, "variants": {"fr": {"subject": "Bonjour {{ ctx.firstName }}"}}}
    client.force_login(marketer)

    def subject_and_variant(**asked):
        answer = ask(client, message, content=content, **asked).json()
        return {p["name"]: p["value"] for p in answer["parts"]}["subject"], answer["variantUsed"]

    ctx = '{"firstName": "Zoé", "AC_language": "fr-CA"}'
    assert subject_and_variant(ctx=ctx, language="fr") == ("Bonjour Zoé", "Variant used: fr")
    assert subject_and_variant(ctx=ctx, language="") == ("Unsaved Zoé", "Default content")
    # As an event with this sample data: fr-CA falls back to fr, as events choose.
    assert subject_and_variant(ctx=ctx, language=None) == ("Bonjour Zoé", "Variant used: fr")
    assert subject_and_variant(ctx=ctx, language="pt-BR") == ("Unsaved Zoé", "Default content")


@pytest.mark.parametrize(
    ("text", "forcing", "extension"),
    [
        ("Prix : 5 €", [], ["€"]),
        ("Merci 🎉 !", ["🎉"], []),
        ("Reçu, garçon", ["ç"], []),
        ("Ça coûte 5 € 🎉", ["û", "🎉"], ["€"]),
        ("Plain GSM-7 é à", [], []),
    ],
)
def test_sms_characters_that_force_ucs2_or_count_twice_are_named(text, forcing, extension):
    found = sms_characters(text)
    assert list(found.forcing_ucs2) == forcing and list(found.extension) == extension


def test_the_sms_preview_marks_the_characters_and_counts_the_segments(client, marketer, organization):
    message = publish_events(
        organization,
        {
            "name": "otp",
            "channel": "sms",
            "fields": [{"name": "code", "type": "text"}],
            "message": {"text": "Code {{ ctx.code }}"},
        },
    )[0].message
    client.force_login(marketer)
    answer = ask(client, message, content={"text": "Reçu {{ ctx.code }} 5 € 🎉"}, ctx='{"code": "12"}')
    sms = answer.json()["sms"]
    assert sms["encoding"] == "UCS-2" and sms["segments"] == 1
    assert sms["forcingUcs2"] == ["ç", "🎉"] and sms["extension"] == ["€"]
    # The saved draft's preview on the message page says it too.
    message.text = "Reçu 5 € 🎉"
    services.save_draft(message=message)
    page = client.get(reverse("admin:transactional_transactionalmessage_change", args=[message.pk]))
    assert "These characters force UCS-2" in page.content.decode()


def test_a_language_given_twice_in_the_variants_is_a_form_error(client, marketer, cart_configuration):
    from tests.admin_forms import change_form_data

    message = cart_configuration.message
    url = reverse("admin:transactional_transactionalmessage_change", args=[message.pk])
    client.force_login(marketer)
    page = client.get(url)
    variants = '{"fr": {"subject": "Bonjour"}, "fr": {"subject": "Salut"}}'
    answer = client.post(url, change_form_data(page, variants=variants, _save="Save"))
    assert answer.status_code == 200
    assert answer.context["adminform"].form.errors["variants"] == [
        "The language fr is given twice: keep one of its variants."
    ]
    shown = answer.context["adminform"].form["variants"].value()
    assert "Bonjour" in shown and "Salut" in shown  # as posted: neither lost on the page
    long_subject = json.dumps({"fr": {"subject": "s" * 999}})
    answer = client.post(url, change_form_data(page, variants=long_subject, _save="Save"))
    errors = answer.context["adminform"].form.errors["variants"]
    assert "variants.fr.subject: at most 998 characters (it has 999)" in errors


def test_a_push_message_previews_its_title_and_body_as_text(client, marketer, organization):
    message = publish_events(
        organization,
        {
            "name": "shipped",
            "channel": "push",
            "fields": [{"name": "order", "type": "text"}],
            "message": {"title": "Shipped", "body": "Order {{ ctx.order }} is on its way"},
        },
    )[0].message
    client.force_login(marketer)
    content = {"title": "<b>Sent</b> {{ ctx.order }}", "body": "Order {{ ctx.order }}"}
    answer = ask(client, message, content=content, ctx='{"order": "A1"}').json()
    assert [(p["label"], p["value"], p["html"]) for p in answer["parts"]] == [
        ("Title", "<b>Sent</b> A1", False),
        ("Body", "Order A1", False),
    ]
    assert "sms" not in answer
    assert ask(client, message, content={"title": "t" * 256}).json()["errors"][0]["field"] == "title"


def test_the_sender_is_shown_as_typed_else_the_organizations(client, marketer, cart_configuration):
    message = cart_configuration.message
    organization = cart_configuration.organization
    client.force_login(marketer)
    typed = {**CART_CONTENT, "from": {"name": "Shop", "address": "shop@geometrixx.example"}}
    assert ask(client, message, content=typed).json()["sender"] == "Shop <shop@geometrixx.example>"
    default = ask(client, message, content={**CART_CONTENT, "from": {"name": "", "address": ""}}).json()
    expected_address = organization.sender_address or "(default sender)"
    assert default["sender"] == f"{organization.sender_name or organization.name} <{expected_address}>"
    for sender, field in (
        ({"name": "x" * 201, "address": ""}, "from.name"),
        ({"name": "", "address": 5}, "from.address"),
        ({"nom": ""}, "from"),
    ):
        answer = ask(client, message, content={**CART_CONTENT, "from": sender})
        assert answer.status_code == 400 and [e["field"] for e in errors_of(answer)] == [field]
