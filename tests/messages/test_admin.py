"""The marketer's message editor in the admin: editing, validation, the publication buttons, and
organization scoping of messages, versions and deliveries."""

from __future__ import annotations

import copy
import json
import re

import pytest
from django.urls import reverse

from campaign.roles import ADMINISTRATORS, MARKETERS
from events import publication
from events.publication import unpublish_configuration
from messages import services
from messages.models import TransactionalMessage
from tests.admin_forms import change_form_data
from tests.conftest import CART_EVENT, publish_events
from tests.factories import member

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def change_url(message: TransactionalMessage) -> str:
    return reverse("admin:transactional_transactionalmessage_change", args=[message.pk])


def action_url(message: TransactionalMessage, action: str) -> str:
    return reverse(f"admin:transactional_transactionalmessage_{action}", args=[message.pk])


def submit(client, message: TransactionalMessage, **changes):
    """Open the message's editor and submit it as shown, with `changes` (a button is a change too)."""
    page = client.get(change_url(message))
    assert page.status_code == 200
    return client.post(change_url(message), change_form_data(page, **changes))


@pytest.fixture
def message(cart_configuration) -> TransactionalMessage:
    return cart_configuration.message


@pytest.fixture
def other_message(other_organization) -> TransactionalMessage:
    event = {**copy.deepcopy(CART_EVENT), "name": "acmeSecretLaunch"}
    event["message"]["subject"] = "Acme secret subject"
    return publish_events(other_organization, event)[0].message


def test_marketer_opens_the_message_with_its_content_and_a_rendered_preview(client, marketer, message):
    client.force_login(marketer)
    page = client.get(change_url(message))
    assert page.status_code == 200
    html = page.content.decode()
    assert "{{ ctx.firstName }}, your cart is waiting" in html  # the editable template
    assert "Preview (sample data)" in html and "The preview could not be rendered" not in html
    assert 'name="_publish"' in html
    assert f'href="{action_url(message, "pause")}"' in html
    assert f'href="{action_url(message, "unpublish")}"' in html
    assert 'name="_resume"' not in html  # only a paused message can be resumed


def test_marketer_saves_a_new_subject_as_a_draft_change_that_is_not_live_yet(client, marketer, message):
    client.force_login(marketer)
    answer = submit(client, message, subject="Still thinking, {{ ctx.firstName }}?", _save="Save")
    assert answer.status_code == 302
    message.refresh_from_db()
    assert message.subject == "Still thinking, {{ ctx.firstName }}?"
    assert message.status == "published"
    assert message.live_version.content["subject"] == "{{ ctx.firstName }}, your cart is waiting"
    assert message.has_unpublished_changes


def test_marketer_publishes_the_edited_message_as_a_new_live_version(client, marketer, message):
    client.force_login(marketer)
    answer = submit(client, message, subject="Come back, {{ ctx.firstName }}", _publish="Save and publish")
    assert answer.status_code == 302 and answer.url == change_url(message)
    message.refresh_from_db()
    assert message.status == "published"
    assert message.live_version.number == 2
    assert message.live_version.content["subject"] == "Come back, {{ ctx.firstName }}"
    assert message.live_version.published_by == marketer
    page = client.get(answer.url)
    assert "The message of EVTcartAbandonment is published." in page.content.decode()


def test_marketer_pauses_resumes_and_unpublishes_the_message(client, marketer, message):
    client.force_login(marketer)

    client.post(action_url(message, "pause"))
    message.refresh_from_db()
    assert message.status == "paused"
    page = client.get(change_url(message)).content.decode()
    assert 'name="_resume"' in page and action_url(message, "pause") not in page

    submit(client, message, _resume="Resume")
    message.refresh_from_db()
    assert message.status == "published"

    client.post(action_url(message, "unpublish"))
    message.refresh_from_db()
    message.configuration.refresh_from_db()
    assert message.status == "draft"
    assert message.configuration.status == "draft"  # unpublishing the message takes the endpoint down


def test_after_unpublish_the_message_page_and_list_show_no_live_version(client, marketer, message):
    from django.utils.html import strip_tags

    client.force_login(marketer)
    page = client.get(change_url(message)).content.decode()
    assert '<div class="readonly">v1</div>' in page
    client.post(action_url(message, "pause"))
    assert "v1 (paused: kept, not sent)" in client.get(change_url(message)).content.decode()
    client.post(action_url(message, "unpublish"))
    page = client.get(change_url(message)).content.decode()
    assert "None: unpublished (v1 was live)" in page and ">v1</div>" not in page
    listing = strip_tags(client.get(reverse("admin:transactional_transactionalmessage_changelist")).content)
    assert "None: unpublished (v1 was live)" in listing
    # Nothing is live: v1 may be republished (which brings the endpoint back).
    versions = client.get(change_url(message).replace("change/", "versions/")).content.decode()
    assert "v1 (live)" not in versions and "Republish v1" in versions


def test_publishing_the_message_of_an_unpublished_event_is_refused_with_a_message(client, marketer, message):
    unpublish_configuration(configuration=message.configuration)
    client.force_login(marketer)
    answer = submit(client, message, _publish="Save and publish")
    message.refresh_from_db()
    assert message.status == "draft"
    page = client.get(answer.url).content.decode()
    assert "Publish the event EVTcartAbandonment before its message." in page
    assert "Your changes are saved in the draft, not published." in page


def test_a_template_with_a_syntax_error_is_a_form_error_and_nothing_is_saved(client, marketer, message):
    client.force_login(marketer)
    answer = submit(client, message, subject="Hello {{ ctx.firstName ", _publish="Save and publish")
    assert answer.status_code == 200  # the form again, with the error
    assert answer.context["adminform"].form.errors["subject"]
    assert "subject" in answer.context["adminform"].form.errors["subject"][0]
    message.refresh_from_db()
    assert message.subject == "{{ ctx.firstName }}, your cart is waiting"
    assert message.live_version.number == 1


def test_an_unknown_variable_is_a_form_error_naming_it(client, marketer, message):
    client.force_login(marketer)
    answer = submit(client, message, html="<p>{{ ctx.nope }}</p>", _save="Save")
    assert answer.status_code == 200
    (error,) = answer.context["adminform"].form.errors["html"]
    assert "nope" in error
    message.refresh_from_db()
    assert "nope" not in message.html


def test_a_from_outside_the_sender_domains_is_a_form_error_naming_the_field_and_nothing_is_saved(
    client, marketer, message
):
    client.force_login(marketer)
    answer = submit(
        client,
        message,
        from_name="PayPal Security",
        from_address="security@paypal.com",
        reply_to="help@geometrixx.example.com",
        _publish="Save and publish",
    )
    assert answer.status_code == 200
    errors = answer.context["adminform"].form.errors
    assert set(errors) == {"from_address"}
    assert "'security@paypal.com' is not in the organization's sender domains" in errors["from_address"][0]
    message.refresh_from_db()
    assert message.from_address == "" and message.live_version.number == 1


def test_a_reply_to_outside_the_sender_domains_is_a_form_error_too(client, marketer, message):
    client.force_login(marketer)
    answer = submit(
        client,
        message,
        from_address="shop@geometrixx.example.com",
        reply_to="help@elsewhere.example",
        _save="Save",
    )
    assert set(answer.context["adminform"].form.errors) == {"reply_to"}
    assert "help@elsewhere.example" in answer.context["adminform"].form.errors["reply_to"][0]
    # A From and a Reply-To in the declared domains are saved.
    answer = submit(
        client,
        message,
        from_address="shop@geometrixx.example.com",
        reply_to="help@Geometrixx.Example.com",
        _save="Save",
    )
    assert answer.status_code == 302
    message.refresh_from_db()
    assert (message.from_address, message.reply_to) == (
        "shop@geometrixx.example.com",
        "help@Geometrixx.Example.com",
    )


def test_the_publish_button_refuses_a_saved_from_whose_domain_was_withdrawn(client, marketer, message):
    from campaign import senders

    message.from_address = "shop@geometrixx.example"
    services.save_draft(message=message)
    senders.remove_sender_domain(organization=message.configuration.organization, domain="geometrixx.example")
    client.force_login(marketer)
    answer = submit(client, message, _publish="Save and publish")
    assert answer.status_code == 200
    (error,) = answer.context["adminform"].form.errors["from_address"]
    assert "'shop@geometrixx.example' is not in the organization's sender domains" in error
    message.refresh_from_db()
    assert message.live_version.number == 1 and "from" not in message.live_version.content


def test_the_message_of_a_published_event_cannot_be_emptied(client, marketer, message):
    client.force_login(marketer)
    answer = submit(client, message, subject="", _save="Save")
    assert answer.status_code == 200
    assert "cannot be emptied" in answer.context["adminform"].form.errors["subject"][0]
    message.refresh_from_db()
    assert message.subject == "{{ ctx.firstName }}, your cart is waiting"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"subject": "Hello {{ ctx.firstName "}, "subject"),
        ({"subject": "Hello {{ ctx.nope }}"}, "subject"),
        ({"html": "<p>{% for %}</p>", "text": ""}, "html"),
    ],
)
def test_a_template_error_is_the_only_error_shown_not_also_emptied(client, marketer, message, changes, field):
    client.force_login(marketer)
    answer = submit(client, message, **changes, _save="Save")
    assert answer.status_code == 200
    errors = answer.context["adminform"].form.errors
    assert list(errors) == [field]
    (error,) = errors[field]
    assert "cannot be emptied" not in error
    assert "cannot be emptied" not in answer.content.decode()


# The probes' templates (tests/messages/test_rendering.py has one test per bound).
CHAINED_REPLACE = '{{ "aaaaaaaaaa"' + '|replace("a","aaaaaaaaaa")' * 9 + " }}"
NESTED_LOOPS = '{% for a in "x"*100000 %}{% for b in "x"*100000 %}{% endfor %}{% endfor %}'


@pytest.mark.parametrize(
    ("field", "template", "bound"),
    [
        ("subject", CHAINED_REPLACE, "beyond the limit of 1,000,000 (RENDER_MAX_OUTPUT_CHARS)"),
        ("html", f"<p>{NESTED_LOOPS}</p>", "loops exceeded 100,000 iterations (RENDER_MAX_LOOP_ITERATIONS)"),
        ("text", "{{ ctx.firstName }}" + "{{ 'x' * 100000 }}" * 11, "output exceeded 1,000,000 characters"),
    ],
)
def test_a_template_beyond_a_bound_of_rendering_is_a_form_error_and_nothing_is_saved(
    client, marketer, message, field, template, bound
):
    client.force_login(marketer)
    answer = submit(client, message, **{field: template}, _save="Save")
    assert answer.status_code == 200
    (error,) = answer.context["adminform"].form.errors[field]
    assert error.startswith(f"{field}: ") and bound in error
    message.refresh_from_db()
    assert getattr(message, field) == message.live_version.content[field]


def test_the_render_deadline_is_a_form_error_too(client, marketer, message, settings):
    settings.RENDER_MAX_LOOP_ITERATIONS = 10**12  # only the deadline is left to stop the loops
    settings.RENDER_TIMEOUT_SECONDS = 0.05
    client.force_login(marketer)
    answer = submit(client, message, html=NESTED_LOOPS, _save="Save")
    (error,) = answer.context["adminform"].form.errors["html"]
    assert "the template exceeded the render deadline of 0.05 s (RENDER_TIMEOUT_SECONDS)" in error


def test_a_language_variant_beyond_a_bound_is_a_form_error_of_the_variants(client, marketer, message):
    client.force_login(marketer)
    answer = submit(client, message, variants=json.dumps({"fr": {"subject": CHAINED_REPLACE}}), _save="Save")
    (error,) = answer.context["adminform"].form.errors["variants"]
    assert error.startswith("variants.fr.subject: ") and "RENDER_MAX_OUTPUT_CHARS" in error
    message.refresh_from_db()
    assert message.variants == {}


def test_the_change_page_of_a_message_beyond_the_bounds_shows_why_instead_of_rendering_it(
    client, marketer, message
):
    """A draft saved before the bounds existed (or written around the form) is previewed within them."""
    message.html = NESTED_LOOPS
    message.save(update_fields=["html"])
    client.force_login(marketer)
    page = client.get(change_url(message)).content.decode()
    assert "The preview could not be rendered" in page and "RENDER_MAX_LOOP_ITERATIONS" in page


def test_marketer_cannot_delete_a_message_nor_create_one(client, marketer, message):
    client.force_login(marketer)
    assert (
        client.get(reverse("admin:transactional_transactionalmessage_delete", args=[message.pk])).status_code
        == 403
    )
    assert client.get(reverse("admin:transactional_transactionalmessage_add")).status_code == 403
    assert TransactionalMessage.objects.filter(pk=message.pk).exists()


def test_administrator_cannot_delete_a_published_message(client, administrator, message):
    client.force_login(administrator)
    answer = client.post(
        reverse("admin:transactional_transactionalmessage_delete", args=[message.pk]), {"post": "yes"}
    )
    assert answer.status_code == 403
    assert TransactionalMessage.objects.filter(pk=message.pk).exists()


@pytest.mark.parametrize("role", [ADMINISTRATORS, MARKETERS])
def test_the_message_list_shows_only_the_own_organization(client, organization, message, other_message, role):
    client.force_login(member(organization=organization, role=role))
    page = client.get(reverse("admin:transactional_transactionalmessage_changelist"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "EVTcartAbandonment" in html
    assert "EVTacmeSecretLaunch" not in html


@pytest.mark.parametrize("role", [ADMINISTRATORS, MARKETERS])
def test_another_organizations_message_cannot_be_opened_or_changed_by_url(
    client, organization, message, other_message, role
):
    client.force_login(member(organization=organization, role=role))
    url = change_url(other_message)
    page = client.get(url, follow=True)
    assert "Acme secret subject" not in page.content.decode()
    assert "doesn’t exist" in page.content.decode() or page.status_code == 404

    client.post(url, {"subject": "hijacked", "_publish": "Save and publish"})
    for action in ("pause", "unpublish"):
        answer = client.post(action_url(other_message, action))
        assert answer.status_code == 404 or answer.url.startswith("/admin/login/")
    other_message.refresh_from_db()
    assert other_message.subject == "Acme secret subject"
    assert other_message.status == "published"


def test_the_versions_of_a_message_are_visible_read_only_to_its_marketer(client, marketer, message):
    client.force_login(marketer)
    submit(client, message, subject="v2 {{ ctx.firstName }}", _publish="Save and publish")
    page = client.get(change_url(message)).content.decode()
    for version in message.versions.all():
        assert reverse("admin:transactional_messageversion_change", args=[version.pk]) in page
    version = message.versions.get(number=1)
    url = reverse("admin:transactional_messageversion_change", args=[version.pk])
    view = client.get(url)
    assert view.status_code == 200
    assert client.post(url, {"number": "7"}).status_code == 403
    version.refresh_from_db()
    assert version.number == 1


@pytest.mark.parametrize(
    "variants, expected",
    [
        ({"fr": {"subject": "{{ ctx.prenom }}"}}, "variants.fr.subject"),
        ({"fr": {"subject": "{% if %}"}}, "variants.fr.subject"),
        ({"fr": {"title": "Bonjour"}}, "variants.fr.title: not a part of this message"),
        ({"xx-YY-zz": {"subject": "Hi"}}, "variants.xx-YY-zz: not a language code"),
        ({"": {"subject": "Hi"}}, "variants.: not a language code"),
    ],
)
def test_language_variants_get_the_checks_of_the_default_content_at_save(
    client, marketer, message, variants, expected
):
    """The editor, the publication and the configuration file share one content check
    (messages.services.content_problems): a variant's template is checked like the default one."""
    client.force_login(marketer)
    answer = submit(client, message, variants=json.dumps(variants), _save="Save")
    assert answer.status_code == 200
    errors = answer.context["adminform"].form.errors
    assert set(errors) == {"variants"} and expected in errors["variants"][0]
    message.refresh_from_db()
    assert message.variants == {}


@pytest.mark.parametrize("language", ["fr", "pt-BR", "pt_BR", "zh-Hant", "zh-Hant-TW", "es-419"])
def test_a_variant_keyed_by_a_language_code_saves(client, marketer, message, language):
    client.force_login(marketer)
    variants = {language: {"subject": "Bonjour {{ ctx.firstName }}"}}
    answer = submit(client, message, variants=json.dumps(variants), _save="Save")
    assert answer.status_code == 302
    message.refresh_from_db()
    assert message.variants == variants


def test_every_publication_checks_the_variants_a_republished_version_included(client, marketer, message):
    """A version made before a rule (or by hand) is checked again when it goes live again."""
    from events import publication
    from messages.lifecycle import PublicationError

    old = message.versions.get(number=1)
    old.content = {**old.content, "variants": {"xx-YY-zz": {"subject": "Hi"}}}
    old.save()
    services.save_draft(message=message)
    with pytest.raises(PublicationError, match=r"variants\.xx-YY-zz: not a language code"):
        publication.republish_version(version=old, user=marketer)
    message.refresh_from_db()
    assert message.live_version.number == 1 and message.variants == {}

    message.variants = {"xx-YY-zz": {"subject": "Hi"}}  # a draft saved before the rule
    services.save_draft(message=message)
    client.force_login(marketer)
    answer = client.post(change_url(message).replace("change/", "versions/1/republish/"))
    assert "ariants.xx-YY-zz: not a language code" in client.get(answer.url).content.decode()
    with pytest.raises(PublicationError, match=r"variants\.xx-YY-zz"):
        publication.publish_message(message=message, user=marketer)


def test_the_configuration_file_refuses_the_same_variant_naming_its_place(organization):
    from events.configuration_file import ConfigurationFileError

    event = copy.deepcopy(CART_EVENT)
    event["message"]["variants"] = {"fr": {"subject": "{{ ctx.prenom }}"}}
    with pytest.raises(ConfigurationFileError, match=r"message\.variants\.fr\.subject: .*prenom"):
        publish_events(organization, event)


def test_each_channels_editor_shows_the_sender_fields_its_messages_use(client, marketer, organization):
    sms, push = publish_events(
        organization,
        {"name": "otp", "channel": "sms", "message": {"text": "Your code"}},
        {"name": "ping", "channel": "push", "message": {"title": "Hi", "body": "There"}},
    )
    client.force_login(marketer)
    form = client.get(change_url(sms.message)).context["adminform"].form
    assert set(form.fields) & {"from_name", "from_address", "reply_to"} == {"from_name"}
    assert form.fields["from_name"].label == "SMS sender"
    assert '{"fr": {"text": ...}}' in form.fields["variants"].help_text
    assert "subject" not in form.fields["variants"].help_text

    answer = submit(client, sms.message, from_name="GEOMETRIXX", _save="Save")
    assert answer.status_code == 302
    sms.message.refresh_from_db()
    assert sms.message.draft_content()["from"] == {"name": "GEOMETRIXX", "address": ""}

    form = client.get(change_url(push.message)).context["adminform"].form
    assert not set(form.fields) & {"from_name", "from_address", "reply_to"}
    assert '{"fr": {"title": ..., "body": ...}}' in form.fields["variants"].help_text

    email = client.get(change_url(publish_events(organization, copy.deepcopy(CART_EVENT))[0].message))
    form = email.context["adminform"].form
    assert {"from_name", "from_address", "reply_to"} <= set(form.fields)
    assert form.fields["from_name"].label == "From name"


def test_an_sms_messages_own_sender_follows_the_organizations_sms_sender_rule(client, marketer, organization):
    """An SMSC keeps 11 characters of an alphanumeric sender: a longer one is refused in the editor
    and at publication (a draft saved before the rule), naming the field, never cut silently."""
    from events import publication
    from messages.lifecycle import PublicationError

    (sms,) = publish_events(organization, {"name": "otp", "channel": "sms", "message": {"text": "Your code"}})
    client.force_login(marketer)
    answer = submit(client, sms.message, from_name="Geometrixx Outdoors", _save="Save")
    errors = answer.context["adminform"].form.errors
    assert "is not an SMS sender" in " ".join(errors["from_name"])
    sms.message.refresh_from_db()
    assert sms.message.from_name == ""
    answer = submit(client, sms.message, from_name="+33 6 12 34 56 78", _save="Save")
    assert answer.status_code == 302
    sms.message.refresh_from_db()
    assert sms.message.from_name == "+33612345678"  # as it is sent

    sms.message.from_name = "Geometrixx Outdoors"  # a draft saved before the rule
    services.save_draft(message=sms.message)
    with pytest.raises(
        PublicationError, match=r"from\.name: SMS sender: 'Geometrixx Outdoors' is not an SMS"
    ):
        publication.publish_message(message=sms.message, user=marketer)


# --- Deleting, refusals, and who did what -----------------------------------------------------


def test_an_administrator_deletes_draft_messages_from_the_list_with_what_goes_along(
    client, organization, message
):
    from django.utils.html import strip_tags

    from messages.models import Delivery, MessageVersion

    unpublish_configuration(configuration=message.configuration)
    client.force_login(member(organization=organization, role=ADMINISTRATORS))
    changelist = reverse("admin:transactional_transactionalmessage_changelist")
    question = client.post(changelist, {"action": "delete_selected", "_selected_action": [message.pk]})
    text = " ".join(strip_tags(question.content.decode()).split())
    assert "Are you sure" in text and "Message versions: 1" in text
    answer = client.post(
        changelist, {"action": "delete_selected", "_selected_action": [message.pk], "post": "yes"}
    )
    assert answer.status_code == 302
    assert not TransactionalMessage.objects.exists() and not MessageVersion.objects.exists()
    assert not Delivery.objects.exists()


def test_deleting_a_published_message_is_refused_naming_it_with_a_way_back(client, organization, message):
    client.force_login(member(organization=organization, role=ADMINISTRATORS))
    changelist = reverse("admin:transactional_transactionalmessage_changelist")
    answer = client.post(
        changelist, {"action": "delete_selected", "_selected_action": [message.pk], "post": "yes"}
    )
    page = answer.content.decode()
    assert "Message of EVTcartAbandonment is published: unpublish it first" in page
    assert f'href="{changelist}"' in page and 'id="back-to-list"' in page
    assert TransactionalMessage.objects.filter(pk=message.pk).exists()


def test_the_403_page_has_the_admins_look_and_a_way_back(client, marketer, message):
    client.force_login(marketer)
    came_from = f"http://testserver{change_url(message)}"
    answer = client.get(reverse("admin:auth_user_changelist"), HTTP_REFERER=came_from)
    assert answer.status_code == 403
    page = answer.content.decode()
    assert "/static/admin/css/base.css" in page and "Transactional messaging" in page
    assert f'href="{came_from}"' in page and 'id="go-home"' in page
    elsewhere = client.get(reverse("admin:auth_user_changelist"), HTTP_REFERER="https://evil.example/")
    assert "evil.example" not in elsewhere.content.decode()


def test_a_marketer_sees_who_published_as_text_not_a_link_to_a_forbidden_page(client, marketer, message):
    message.subject = "v2 {{ ctx.firstName }}"
    services.save_draft(message=message)
    publication.publish_message(message=message, user=marketer)
    client.force_login(marketer)
    page = client.get(change_url(message)).content.decode()
    publishers = re.findall(r'<td class="field-publisher">\s*<p>(.*?)</p>', page)
    assert publishers == [marketer.username, "command line"]  # v2, then v1 (imported)
    assert reverse("admin:auth_user_change", args=[marketer.pk]) not in page


def test_every_page_has_an_icon(client, marketer, message):
    client.force_login(marketer)
    assert 'rel="icon"' in client.get(change_url(message)).content.decode()
    icon = client.get("/favicon.ico")
    assert icon.status_code == 301 and icon.url.endswith("campaign/favicon.svg")


# --- The editor: the event's fields at hand, variants that can never be chosen -----------------


def test_the_editor_lists_the_events_fields_each_inserting_itself_and_a_collection_its_loop(
    client, marketer, message
):
    from html import unescape

    client.force_login(marketer)
    html = client.get(change_url(message)).content.decode()
    panel = unescape(html.split('id="event-fields"')[1].split("</div>")[0])
    assert 'data-targets="subject html text"' in panel
    for name in ("firstName", "cartAmount", "lastProduct"):
        assert f'data-insert="{{{{ ctx.{name} }}}}"' in panel
    assert (
        'data-insert="{% for item in ctx.products %}\n{{ item.sku }} {{ item.price }}\n{% endfor %}"' in panel
    )
    assert "/static/campaign/message_editor.js" in html and "<script>" not in html


VARIANTS = {"fr": {"subject": "Bonjour {{ ctx.firstName }}"}, "de": {"subject": "Hallo {{ ctx.firstName }}"}}


def test_variants_of_a_real_time_event_without_ac_language_are_said_never_to_be_chosen(
    client, marketer, message
):
    client.force_login(marketer)
    assert 'id="variant-warning"' not in client.get(change_url(message)).content.decode()

    answer = submit(client, message, variants=json.dumps(VARIANTS), _continue="Save")
    assert answer.status_code == 302
    page = client.get(answer.url).content.decode()
    warning = "The variants de, fr can never be chosen: EVTcartAbandonment is a real-time event without"
    assert page.count(warning) == 2  # said after the save, and on the page while it stays true
    assert 'id="variant-warning"' in page


WITH_AC_LANGUAGE = {
    "fields": [{"name": "firstName", "type": "text"}, {"name": "AC_language", "type": "text"}]
}
PROFILE_TARGETED = {
    "targeting": "profile",
    "fields": [{"name": "email", "type": "email"}, {"name": "firstName", "type": "text"}],
    "reconciliation": {"eventField": "email", "profileField": "email"},
}


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(WITH_AC_LANGUAGE, id="an AC_language field"),
        pytest.param(PROFILE_TARGETED, id="profile targeting"),
    ],
)
def test_variants_that_can_be_chosen_bring_no_warning(client, marketer, organization, change):
    event = {**copy.deepcopy(CART_EVENT), "name": "chosen", "collections": [], **change}
    event["message"] = {"subject": "Hi {{ ctx.firstName }}", "html": "<p>Hi</p>", "variants": VARIANTS}
    message = publish_events(organization, event)[0].message
    assert message.variants == VARIANTS
    client.force_login(marketer)
    assert 'id="variant-warning"' not in client.get(change_url(message)).content.decode()
