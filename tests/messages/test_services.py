"""The message lifecycle and authoring services: versions, preview, proofs, SMS length, differences."""

from __future__ import annotations

import pytest
from django.core import mail

from events.models import Event
from events.services import PublicationError
from messages import services
from messages.channels.sms import sms_length
from messages.models import Delivery, MessageVersion
from tests.conftest import publish_events
from tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db


def test_publishing_snapshots_an_immutable_version_and_edits_stay_draft(cart_configuration, administrator):
    message = cart_configuration.message
    first = message.live_version
    assert first.number == 1 and first.content["subject"] == "{{ ctx.firstName }}, your cart is waiting"
    message.subject = "Changed"
    message.save()
    message.refresh_from_db()
    assert message.has_unpublished_changes and message.live_version == first
    second = services.publish_message(message=message, user=administrator)
    assert second.number == 2 and second.published_by == administrator
    assert MessageVersion.objects.get(pk=first.pk).content["subject"] != "Changed"
    # Publishing again without changes makes no new version.
    assert services.publish_message(message=message).number == 2


def test_republishing_an_older_version_makes_it_live(cart_configuration):
    message = cart_configuration.message
    message.subject = "Second"
    message.save()
    services.publish_message(message=message)
    restored = services.republish_version(version=message.versions.get(number=1))
    assert restored.number == 3 and restored.content["subject"] == "{{ ctx.firstName }}, your cart is waiting"
    message.refresh_from_db()
    assert message.live_version == restored and not message.has_unpublished_changes


def test_a_message_cannot_publish_before_its_event_or_empty(organization):
    configuration = publish_events(organization, {"name": "e", "channel": "email", "fields": []})[0]
    message = configuration.message
    message.subject, message.html, message.text = "", "", ""
    message.save()
    with pytest.raises(PublicationError, match="subject"):
        services.publish_message(message=message)


def test_a_message_whose_event_an_administrator_unpublished_cannot_be_published(cart_configuration):
    from events.services import unpublish_configuration

    unpublish_configuration(configuration=cart_configuration)
    with pytest.raises(PublicationError, match="Publish the event EVTcartAbandonment before its message"):
        services.publish_message(message=cart_configuration.message)


def test_publishing_an_unpublished_message_again_brings_its_endpoint_back(cart_configuration):
    message = cart_configuration.message
    services.unpublish_message(message=message)
    cart_configuration.refresh_from_db()
    assert cart_configuration.status == "draft"
    services.publish_message(message=message)
    message.refresh_from_db()
    cart_configuration.refresh_from_db()
    assert message.status == "published" and cart_configuration.status == "published"


def test_resume_publishes_the_content_as_it_stands_at_resume(cart_configuration):
    message = cart_configuration.message
    first = message.live_version
    services.pause_message(message=message)
    message.subject = "Edited while paused, {{ ctx.firstName }}"
    services.save_draft(message=message)
    services.resume_message(message=message)
    message.refresh_from_db()
    assert message.status == "published"
    assert message.live_version.number == first.number + 1
    assert message.live_version.content["subject"] == "Edited while paused, {{ ctx.firstName }}"


def test_resume_refuses_a_draft_that_does_not_compile_and_stays_paused(cart_configuration):
    message = cart_configuration.message
    services.pause_message(message=message)
    message.subject = "{{ ctx.firstName "
    services.save_draft(message=message)
    with pytest.raises(PublicationError, match="subject"):
        services.resume_message(message=message)
    message.refresh_from_db()
    assert message.status == "paused"


def test_publishing_refuses_a_draft_beyond_a_bound_of_rendering(cart_configuration):
    """However the draft was written (the admin's form checks it on save): publishing renders it
    with the sample data and refuses it, naming the part and the bound."""
    message = cart_configuration.message
    message.text = '{% for a in "x"*100000 %}{% for b in "x"*100000 %}{% endfor %}{% endfor %}'
    services.save_draft(message=message)
    with pytest.raises(PublicationError) as refused:
        services.publish_message(message=message)
    assert refused.value.errors == [
        "text: the template's loops exceeded 100,000 iterations (RENDER_MAX_LOOP_ITERATIONS)"
    ]
    message.refresh_from_db()
    assert message.live_version.number == 1


def test_pause_and_resume_only_from_the_right_states(cart_configuration):
    message = cart_configuration.message
    with pytest.raises(PublicationError):
        services.resume_message(message=message)
    services.pause_message(message=message)
    with pytest.raises(PublicationError):
        services.pause_message(message=message)
    services.resume_message(message=message)
    services.unpublish_message(message=message)
    message.refresh_from_db()
    cart_configuration.refresh_from_db()
    assert message.status == "draft" and cart_configuration.status == "draft"


def test_preview_renders_the_draft_with_sample_data_from_the_field_types(cart_configuration):
    message = cart_configuration.message
    message.html = "<p>{{ ctx.firstName }}</p>{% for p in ctx.products %}<i>{{ p.sku }}</i>{% endfor %}"
    rendered = services.preview_message(message=message)
    assert "FirstName value" in rendered.parts["html"]
    assert rendered.parts["html"].count("<i>") == 2
    custom = services.preview_message(message=message, ctx={"firstName": "<b>Zoé</b>", "products": []})
    assert "&lt;b&gt;Zoé&lt;/b&gt;" in custom.parts["html"]
    assert Event.objects.count() == 0


def test_proofs_arrive_marked_and_are_recorded_as_deliveries_not_events(cart_configuration, smtp_email):
    message = cart_configuration.message
    profile = ProfileFactory(organization=cart_configuration.organization, email="tester@example.com")
    deliveries = services.send_proof(
        message=message, addresses=["qa@example.com"], profiles=[profile], ctx={"firstName": "Proofy"}
    )
    received = smtp_email.wait_for(2)
    assert sorted(r for m in received for r in m.recipients) == ["qa@example.com", "tester@example.com"]
    assert all(m.subject == "[Proof] Proofy, your cart is waiting" for m in received)
    assert [d.is_proof for d in deliveries] == [True, True]
    assert Delivery.objects.filter(is_proof=True, event__isnull=True).count() == 2
    assert Event.objects.count() == 0


def test_proofs_refuse_bad_addresses_and_foreign_profiles(cart_configuration, other_organization):
    message = cart_configuration.message
    with pytest.raises(services.ProofError, match="not an email"):
        services.send_proof(message=message, addresses=["nope"])
    with pytest.raises(services.ProofError, match="organization"):
        services.send_proof(
            message=message, addresses=[], profiles=[ProfileFactory(organization=other_organization)]
        )
    with pytest.raises(services.ProofError, match="at least one"):
        services.send_proof(message=message, addresses=[" "])
    assert mail.outbox == []


@pytest.mark.parametrize(
    ("text", "encoding", "characters", "segments"),
    [
        ("", "GSM-7", 0, 0),
        ("Hello", "GSM-7", 5, 1),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("€" * 80, "GSM-7", 160, 1),  # each € takes two septets
        ("Zoë ☕", "UCS-2", 5, 1),
        ("ü" * 200, "GSM-7", 200, 2),
        ("ß" + "ş" * 70, "UCS-2", 71, 2),
        ("😀" * 35, "UCS-2", 70, 1),  # surrogate pairs count twice
    ],
)
def test_sms_length_encoding_and_segments(text, encoding, characters, segments):
    length = sms_length(text)
    assert (length.encoding, length.characters, length.segments) == (encoding, characters, segments)


def test_content_difference_lists_only_changed_parts(cart_configuration):
    message = cart_configuration.message
    old = message.live_version.content
    new = {**old, "subject": "Something <new>"}
    differences = services.content_difference(older=old, newer=new, channel="email")
    assert [part for part, _ in differences] == ["subject"]
    assert "Something&nbsp;&lt;new&gt;" in differences[0][1] and "<new>" not in differences[0][1]
