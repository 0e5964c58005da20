"""The message lifecycle and authoring services: versions, preview, proofs, SMS length, differences."""

from __future__ import annotations

import pytest
from django.core import mail

from campaign import senders
from campaign.models import ProofRecipient
from campaign.roles import MARKETERS
from events import publication
from events.models import Event
from messages import services
from messages.channels.sms import sms_length
from messages.lifecycle import PublicationError
from messages.models import Delivery, MessageVersion
from tests.conftest import publish_events
from tests.factories import ProfileFactory, member

pytestmark = pytest.mark.django_db


def test_publishing_snapshots_an_immutable_version_and_edits_stay_draft(cart_configuration, administrator):
    message = cart_configuration.message
    first = message.live_version
    assert first.number == 1 and first.content["subject"] == "{{ ctx.firstName }}, your cart is waiting"
    message.subject = "Changed"
    message.save()
    message.refresh_from_db()
    assert message.has_unpublished_changes and message.live_version == first
    second = publication.publish_message(message=message, user=administrator)
    assert second.number == 2 and second.published_by == administrator
    assert MessageVersion.objects.get(pk=first.pk).content["subject"] != "Changed"
    # Publishing again without changes makes no new version.
    assert publication.publish_message(message=message).number == 2


def test_republishing_an_older_version_makes_it_live(cart_configuration):
    message = cart_configuration.message
    message.subject = "Second"
    message.save()
    publication.publish_message(message=message)
    restored = publication.republish_version(version=message.versions.get(number=1))
    assert restored.number == 3 and restored.content["subject"] == "{{ ctx.firstName }}, your cart is waiting"
    message.refresh_from_db()
    assert message.live_version == restored and not message.has_unpublished_changes


def test_a_message_cannot_publish_before_its_event_or_empty(organization):
    configuration = publish_events(organization, {"name": "e", "channel": "email", "fields": []})[0]
    message = configuration.message
    message.subject, message.html, message.text = "", "", ""
    message.save()
    with pytest.raises(PublicationError, match="subject"):
        publication.publish_message(message=message)


def test_a_message_whose_event_an_administrator_unpublished_cannot_be_published(cart_configuration):
    from events.publication import unpublish_configuration

    unpublish_configuration(configuration=cart_configuration)
    with pytest.raises(PublicationError, match="Publish the event EVTcartAbandonment before its message"):
        publication.publish_message(message=cart_configuration.message)


def test_publishing_an_unpublished_message_again_brings_its_endpoint_back(cart_configuration):
    message = cart_configuration.message
    publication.unpublish_message(message=message)
    cart_configuration.refresh_from_db()
    assert cart_configuration.status == "draft"
    publication.publish_message(message=message)
    message.refresh_from_db()
    cart_configuration.refresh_from_db()
    assert message.status == "published" and cart_configuration.status == "published"


def test_resume_publishes_the_content_as_it_stands_at_resume(cart_configuration):
    message = cart_configuration.message
    first = message.live_version
    publication.pause_message(message=message)
    message.subject = "Edited while paused, {{ ctx.firstName }}"
    services.save_draft(message=message)
    publication.resume_message(message=message)
    message.refresh_from_db()
    assert message.status == "published"
    assert message.live_version.number == first.number + 1
    assert message.live_version.content["subject"] == "Edited while paused, {{ ctx.firstName }}"


def test_resume_refuses_a_draft_that_does_not_compile_and_stays_paused(cart_configuration):
    message = cart_configuration.message
    publication.pause_message(message=message)
    message.subject = "{{ ctx.firstName "
    services.save_draft(message=message)
    with pytest.raises(PublicationError, match="subject"):
        publication.resume_message(message=message)
    message.refresh_from_db()
    assert message.status == "paused"


def test_publishing_refuses_a_draft_beyond_a_bound_of_rendering(cart_configuration):
    """However the draft was written (the admin's form checks it on save): publishing renders it
    with the sample data and refuses it, naming the part and the bound."""
    message = cart_configuration.message
    message.text = '{% for a in "x"*100000 %}{% for b in "x"*100000 %}{% endfor %}{% endfor %}'
    services.save_draft(message=message)
    with pytest.raises(PublicationError) as refused:
        publication.publish_message(message=message)
    assert refused.value.errors == [
        "text: the template's loops exceeded 100,000 iterations (RENDER_MAX_LOOP_ITERATIONS)"
    ]
    message.refresh_from_db()
    assert message.live_version.number == 1


def test_pause_and_resume_only_from_the_right_states(cart_configuration):
    message = cart_configuration.message
    with pytest.raises(PublicationError):
        publication.resume_message(message=message)
    publication.pause_message(message=message)
    with pytest.raises(PublicationError):
        publication.pause_message(message=message)
    publication.resume_message(message=message)
    publication.unpublish_message(message=message)
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
    organization = cart_configuration.organization
    profile = ProfileFactory(organization=organization, email="tester@example.com", is_test=True)
    ProofRecipient.objects.create(organization=organization, kind="email", value="qa@example.com")
    deliveries = services.send_proof(
        message=message, addresses=["qa@example.com"], profiles=[profile], ctx={"firstName": "Proofy"}
    )
    received = smtp_email.wait_for(2)
    assert sorted(r for m in received for r in m.recipients) == ["qa@example.com", "tester@example.com"]
    assert all(m.subject == "[Proof] Proofy, your cart is waiting" for m in received)
    assert [d.is_proof for d in deliveries] == [True, True]
    assert Delivery.objects.filter(is_proof=True, events__isnull=True).count() == 2
    assert Event.objects.count() == 0


def test_proofs_refuse_bad_addresses_and_foreign_profiles(cart_configuration, other_organization):
    message = cart_configuration.message
    with pytest.raises(services.ProofError, match="not an email"):
        services.send_proof(message=message, addresses=["nope"])
    with pytest.raises(services.ProofError, match="organization"):
        services.send_proof(
            message=message,
            addresses=[],
            profiles=[ProfileFactory(organization=other_organization, is_test=True)],
        )
    with pytest.raises(services.ProofError, match="at least one"):
        services.send_proof(message=message, addresses=[" "])
    assert mail.outbox == []


# --- Proofs go to test profiles and the allow-list only, within a quota ------------------------


def test_a_proof_to_an_address_that_is_neither_a_test_profile_nor_allow_listed_is_refused(
    cart_configuration,
):
    organization = cart_configuration.organization
    customer = ProfileFactory(organization=organization, email="customer@example.com")  # not a test profile
    ProofRecipient.objects.create(organization=organization, kind="domain", value="agency.example")
    for outside in ("victim@elsewhere.example", "customer@example.com", "someone@sub.agency.example"):
        with pytest.raises(services.ProofError, match="neither a test profile's nor on the proof allow-list"):
            services.send_proof(message=cart_configuration.message, addresses=[outside])
    with pytest.raises(services.ProofError, match="is not a test profile"):
        services.send_proof(message=cart_configuration.message, addresses=[], profiles=[customer])
    assert mail.outbox == [] and not Delivery.objects.exists()


def test_a_test_profiles_address_and_an_allow_listed_domain_may_be_typed(cart_configuration):
    organization = cart_configuration.organization
    ProfileFactory(organization=organization, email="Tester@Example.com", is_test=True)
    ProofRecipient.objects.create(organization=organization, kind="domain", value="agency.example")
    services.send_proof(
        message=cart_configuration.message, addresses=["tester@example.com", "Anyone@Agency.example"]
    )
    assert sorted(m.to[0] for m in mail.outbox) == ["anyone@agency.example", "tester@example.com"]


def test_the_eleventh_proof_in_a_minute_is_refused_and_sends_nothing(cart_configuration, settings):
    settings.PROOF_RATE_PER_MINUTE = 10
    organization = cart_configuration.organization
    ProofRecipient.objects.create(organization=organization, kind="domain", value="agency.example")
    marketer = member(organization=organization, role=MARKETERS)
    message = cart_configuration.message
    for number in range(10):
        services.send_proof(message=message, addresses=[f"qa{number}@agency.example"], user=marketer)
    with pytest.raises(services.ProofError, match="at most 10 proofs a minute"):
        services.send_proof(message=message, addresses=["qa10@agency.example"], user=marketer)
    assert len(mail.outbox) == 10 and Delivery.objects.filter(is_proof=True).count() == 10
    # Another user has a quota of their own.
    services.send_proof(
        message=message,
        addresses=["qa10@agency.example"],
        user=member(organization=organization, role=MARKETERS),
    )
    assert len(mail.outbox) == 11


def test_each_recipient_of_a_proof_counts_and_a_proof_over_the_quota_is_refused_whole(
    cart_configuration, settings
):
    settings.PROOF_RATE_PER_MINUTE = 3
    organization = cart_configuration.organization
    ProofRecipient.objects.create(organization=organization, kind="domain", value="agency.example")
    marketer = member(organization=organization, role=MARKETERS)
    many = [f"qa{n}@agency.example" for n in range(4)]
    with pytest.raises(services.ProofError, match="at most 3 proofs a minute"):
        services.send_proof(message=cart_configuration.message, addresses=many, user=marketer)
    assert mail.outbox == []
    services.send_proof(message=cart_configuration.message, addresses=many[:3], user=marketer)
    assert len(mail.outbox) == 3


def test_sms_proofs_go_to_test_profiles_phones_and_allow_listed_numbers(organization):
    configuration = publish_events(
        organization, {"name": "otp", "channel": "sms", "message": {"text": "Your code"}}
    )[0]
    tester = ProfileFactory(organization=organization, mobile_phone="+33612345678", is_test=True)
    ProofRecipient.objects.create(organization=organization, kind="phone", value="+14155550100")
    deliveries = services.send_proof(
        message=configuration.message, addresses=["+1 415 555 0100"], profiles=[tester]
    )
    assert sorted(d.recipient for d in deliveries) == ["+14155550100", "+33612345678"]
    with pytest.raises(services.ProofError, match="neither a test profile's nor on the proof allow-list"):
        services.send_proof(message=configuration.message, addresses=["+33 7 00 00 00 00"])


def test_push_proofs_go_to_allow_listed_registration_tokens_only(organization):
    configuration = publish_events(
        organization, {"name": "ping", "channel": "push", "message": {"title": "Hi", "body": "There"}}
    )[0]
    ProofRecipient.objects.create(organization=organization, kind="push", value="device-token-1")
    (delivery,) = services.send_proof(message=configuration.message, addresses=["device-token-1"])
    assert delivery.recipient == "device-token-1" and delivery.outcome == "sent"
    with pytest.raises(services.ProofError, match="neither a test profile's nor on the proof allow-list"):
        services.send_proof(message=configuration.message, addresses=["device-token-2"])
    tester = ProfileFactory(organization=organization, is_test=True)
    with pytest.raises(services.ProofError, match="no push registration token"):
        services.send_proof(message=configuration.message, addresses=[], profiles=[tester])


# --- Senders: From and Reply-To in the organization's sender domains -----------------------------


def test_publishing_refuses_a_from_whose_domain_was_withdrawn_after_the_draft_was_saved(cart_configuration):
    message = cart_configuration.message
    message.from_address, message.reply_to = "shop@geometrixx.example", "help@geometrixx.example"
    services.save_draft(message=message)
    senders.remove_sender_domain(organization=cart_configuration.organization, domain="geometrixx.example")
    with pytest.raises(PublicationError) as refused:
        publication.publish_message(message=message)
    assert refused.value.errors == [
        "from: 'shop@geometrixx.example' is not in the organization's sender domains "
        "(example.com, geometrixx.example.com).",
        "replyTo: 'help@geometrixx.example' is not in the organization's sender domains "
        "(example.com, geometrixx.example.com).",
    ]
    message.refresh_from_db()
    assert message.live_version.number == 1 and "from" not in message.live_version.content
    # Nor does a proof of that draft go out.
    ProofRecipient.objects.create(
        organization=message.configuration.organization, kind="email", value="qa@example.com"
    )
    with pytest.raises(services.ProofError, match="from: 'shop@geometrixx.example' is not in"):
        services.send_proof(message=message, addresses=["qa@example.com"])
    assert mail.outbox == []


def test_publishing_refuses_the_organizations_default_sender_once_its_domain_is_withdrawn(cart_configuration):
    organization = cart_configuration.organization  # news@geometrixx.example.com, the message has no From
    senders.remove_sender_domain(organization=organization, domain="geometrixx.example.com")
    message = cart_configuration.message
    message.subject = "Changed"
    services.save_draft(message=message)
    with pytest.raises(PublicationError, match="default sender is used"):
        publication.publish_message(message=message)


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


def test_a_proof_beyond_the_quota_is_refused_before_anything_is_rendered(
    cart_configuration, settings, monkeypatch
):
    settings.PROOF_RATE_PER_MINUTE = 10
    ProofRecipient.objects.create(
        organization=cart_configuration.organization, kind="domain", value="qa.example"
    )
    message = cart_configuration.message
    renders = []
    monkeypatch.setattr(services, "preview_message", lambda **kwargs: renders.append(kwargs))
    with pytest.raises(services.ProofError, match="proofs a minute"):
        services.send_proof(message=message, addresses=[f"u{i}@qa.example" for i in range(40)])
    assert renders == []


def test_typed_proof_addresses_share_one_render(cart_configuration, settings, monkeypatch):
    ProofRecipient.objects.create(
        organization=cart_configuration.organization, kind="domain", value="qa.example"
    )
    original, renders = services.preview_message, []

    def counted(**kwargs):
        renders.append(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(services, "preview_message", counted)
    deliveries = services.send_proof(
        message=cart_configuration.message, addresses=[f"u{i}@qa.example" for i in range(3)]
    )
    assert len(deliveries) == 3 and len(renders) == 1
