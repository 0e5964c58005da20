"""The public unsubscribe page (/u/<token>): links made by us work, links made up do not, and links
already in mailboxes (the first format) keep working."""

from __future__ import annotations

import pytest
from django.core import signing
from django.urls import reverse

from messages import services
from tests.factories import ProfileFactory


def first_format_token(profile) -> str:
    """How links were made before this release (copied from it): Django's signed ids, nothing more."""
    return signing.dumps(
        {"p": profile.pk, "o": profile.organization_id}, salt="messages.unsubscribe", compress=True
    )


def page(token: str) -> str:
    return reverse("unsubscribe", args=[token])


@pytest.fixture
def profile(organization):
    return ProfileFactory(organization=organization, email="jane@example.com")


def test_a_link_sent_before_this_release_still_opts_out(client, profile):
    shown = client.get(page(first_format_token(profile)))
    assert shown.status_code == 200 and "jane@example.com" in shown.content.decode()
    done = client.post(page(first_format_token(profile)), {"List-Unsubscribe": "One-Click"})
    assert "You are unsubscribed" in done.content.decode()
    profile.refresh_from_db()
    assert profile.opted_out


def test_a_new_link_opts_out_its_profile_only(client, profile, other_organization):
    other = ProfileFactory(organization=other_organization, email="someone@acme.example")
    url = services.unsubscribe_url(profile=profile)
    assert client.get(url).content.decode().count("jane@example.com") == 1
    client.post(url, {"List-Unsubscribe": "One-Click"})
    profile.refresh_from_db()
    other.refresh_from_db()
    assert profile.opted_out and not other.opted_out


def test_a_new_link_carries_a_256_bit_signature_and_no_address(profile):
    token = services.unsubscribe_token(profile=profile)
    profile_id, signature = token.split(".")
    assert profile_id == str(profile.pk)
    assert len(signature) == 43  # base64 of HMAC-SHA256: not enumerable
    assert "jane" not in token


def test_counting_through_ids_finds_nobody(client, profile, other_organization):
    other = ProfileFactory(organization=other_organization, email="someone@acme.example")
    signature = services.unsubscribe_token(profile=profile).split(".")[1]
    # The signature of one's own link does not open another profile's page.
    for token in (f"{other.pk}.{signature}", f"{other.pk}.{signature[:-1]}A", f"{other.pk}."):
        answer = client.get(page(token))
        assert answer.status_code == 404 and "someone@acme.example" not in answer.content.decode()
    assert client.post(page(f"{other.pk}.{signature}")).status_code == 404
    other.refresh_from_db()
    assert not other.opted_out


def test_a_link_made_with_another_key_is_refused_in_both_formats(client, profile, settings):
    new = services.unsubscribe_token(profile=profile)
    first = first_format_token(profile)
    settings.SECRET_KEY = "another-" + "k" * 50
    assert client.get(page(new)).status_code == 404
    assert client.get(page(first)).status_code == 404


def test_links_survive_a_key_rotation_through_fallbacks(client, profile, settings):
    new = services.unsubscribe_token(profile=profile)
    first = first_format_token(profile)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "rotated-" + "k" * 50
    assert client.get(page(new)).status_code == 200
    assert client.get(page(first)).status_code == 200


def test_a_link_for_a_changed_address_no_longer_opens(client, profile):
    url = services.unsubscribe_url(profile=profile)
    profile.email = "jane.new@example.com"
    profile.save()
    assert client.get(url).status_code == 404


@pytest.mark.parametrize("token", ["x" * 201, "9" * 40 + ".abc", "abc.def", "..", "１２.abc", "e30:bad"])
def test_malformed_links_answer_404(client, profile, token):
    assert client.get(page(token)).status_code == 404
