"""The roles and the organization scoping of the admin: what an administrator and a marketer may
open, what an administrator of one organization sees of another, API credentials, profiles and users."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

from campaign.models import (
    AccessToken,
    ApiCredential,
    Membership,
    Organization,
    Profile,
    ProofRecipient,
    Quarantine,
    SenderDomain,
    hash_secret,
)
from campaign.roles import ADMINISTRATORS, MARKETERS
from tests.admin_forms import change_form_data
from tests.conftest import CART_URL, api_client_for
from tests.factories import ProfileFactory, UserFactory, member

pytestmark = pytest.mark.django_db

PASSWORD = "a-Long-and-unusual-passphrase-42"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def url(name: str, *args) -> str:
    return reverse(f"admin:{name}", args=args)


def permissions_of(group_name: str) -> set[str]:
    group = Group.objects.get(name=group_name)
    return {
        f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")
    }


def flash_messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# --- The roles ----------------------------------------------------------------------------------


def test_the_two_roles_exist_after_migrations():
    assert set(Group.objects.values_list("name", flat=True)) >= {"Administrators", "Marketers"}


def test_marketers_edit_messages_and_read_events_and_nothing_else():
    assert permissions_of("Marketers") == {
        "transactional.view_transactionalmessage",
        "transactional.change_transactionalmessage",
        "transactional.view_messageversion",
        "transactional.view_delivery",
        "transactional.view_messagestatuschange",
        "events.view_event",
    }


def test_administrators_manage_event_types_credentials_users_and_profiles():
    granted = permissions_of("Administrators")
    assert {
        "events.add_eventconfiguration",
        "events.change_eventconfiguration",
        "events.delete_eventconfiguration",
        "events.add_eventfield",
        "events.view_event",
        "campaign.add_apicredential",
        "campaign.change_apicredential",
        "campaign.add_profile",
        "campaign.change_quarantine",
        "auth.add_user",
        "auth.change_user",
        "campaign.change_organization",
        "campaign.add_senderdomain",
        "campaign.delete_senderdomain",
        "campaign.add_proofrecipient",
        "campaign.delete_proofrecipient",
        "transactional.change_transactionalmessage",
    } <= granted
    # Nobody but a superuser creates organizations, edits roles, or changes an event by hand.
    assert not granted & {
        "campaign.add_organization",
        "campaign.delete_organization",
        "auth.add_group",
        "auth.change_group",
        "auth.add_permission",
        "events.change_event",
        "events.add_event",
        "transactional.add_transactionalmessage",
        "transactional.change_messageversion",
    }


# --- A marketer ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "page",
    [
        "campaign_apicredential_changelist",
        "campaign_apicredential_add",
        "auth_user_changelist",
        "auth_user_add",
        "auth_group_changelist",
        "campaign_profile_changelist",
        "campaign_organization_changelist",
        "campaign_senderdomain_changelist",
        "campaign_senderdomain_add",
        "campaign_proofrecipient_changelist",
        "campaign_proofrecipient_add",
    ],
)
def test_marketer_is_forbidden_credentials_users_roles_and_profiles(client, marketer, page):
    client.force_login(marketer)
    assert client.get(url(page)).status_code == 403


def test_marketer_cannot_open_a_credential_or_a_user_by_url(client, marketer, administrator, organization):
    credential = api_client_for(organization).credential
    client.force_login(marketer)
    assert client.get(url("campaign_apicredential_change", credential.pk)).status_code == 403
    assert client.get(url("auth_user_change", administrator.pk)).status_code == 403
    answer = client.post(
        url("auth_user_change", marketer.pk), {"username": marketer.username, "is_superuser": "on"}
    )
    assert answer.status_code == 403
    marketer.refresh_from_db()
    assert not marketer.is_superuser


def test_marketer_index_offers_messages_and_events_only(client, marketer):
    client.force_login(marketer)
    html = client.get(url("index")).content.decode()
    assert url("transactional_transactionalmessage_changelist") in html
    assert url("events_event_changelist") in html
    assert url("events_eventconfiguration_changelist") not in html
    assert url("campaign_apicredential_changelist") not in html
    assert url("auth_user_changelist") not in html


# --- Organization scoping ----------------------------------------------------------------------


@pytest.fixture
def theirs(other_organization):
    """What organization B has: a credential, a profile, a user, a quarantined address, a token."""
    client = api_client_for(other_organization)
    client.credential.name = "acme-production-key"
    client.credential.save()
    return {
        "credential": client.credential,
        "profile": ProfileFactory(organization=other_organization, email="ceo@acme.example.com"),
        "user": member(organization=other_organization, role=MARKETERS),
        "quarantine": Quarantine.objects.create(
            organization=other_organization, channel="email", address="bounced@acme.example.com"
        ),
        "token": AccessToken.objects.get(credential=client.credential),
    }


@pytest.fixture
def ours(organization):
    client = api_client_for(organization)
    client.credential.name = "geometrixx-website"
    client.credential.save()
    return {
        "credential": client.credential,
        "profile": ProfileFactory(organization=organization, email="jack@geometrixx.example.com"),
        "quarantine": Quarantine.objects.create(
            organization=organization, channel="email", address="bounced@geometrixx.example.com"
        ),
    }


@pytest.mark.parametrize(
    ("changelist", "our_text", "their_text"),
    [
        ("campaign_apicredential_changelist", "geometrixx-website", "acme-production-key"),
        ("campaign_profile_changelist", "jack@geometrixx.example.com", "ceo@acme.example.com"),
        ("campaign_quarantine_changelist", "bounced@geometrixx.example.com", "bounced@acme.example.com"),
        ("campaign_accesstoken_changelist", "geometrixx-website", "acme-production-key"),
        ("campaign_organization_changelist", "geometrixx", "acme"),
    ],
)
def test_administrator_lists_only_the_own_organization(
    client, administrator, ours, theirs, changelist, our_text, their_text
):
    client.force_login(administrator)
    page = client.get(url(changelist))
    assert page.status_code == 200
    html = page.content.decode()
    assert our_text in html
    assert their_text not in html


def test_administrator_lists_only_the_own_organizations_users_and_no_superuser(
    client, administrator, marketer, theirs
):
    root = UserFactory(username="root-operator", is_superuser=True)
    client.force_login(administrator)
    html = client.get(url("auth_user_changelist")).content.decode()
    assert administrator.username in html and marketer.username in html
    assert theirs["user"].username not in html
    assert root.username not in html


@pytest.mark.parametrize(
    ("page", "key", "secret_text"),
    [
        ("campaign_apicredential_change", "credential", "acme-production-key"),
        ("campaign_profile_change", "profile", "ceo@acme.example.com"),
        ("campaign_quarantine_change", "quarantine", "bounced@acme.example.com"),
        ("campaign_accesstoken_change", "token", "acme-production-key"),
        ("auth_user_change", "user", "@example.com"),
        ("auth_user_password_change", "user", "@example.com"),
    ],
)
def test_another_organizations_objects_do_not_open_by_url(
    client, administrator, theirs, page, key, secret_text
):
    client.force_login(administrator)
    answer = client.get(url(page, theirs[key].pk), follow=True)
    html = answer.content.decode()
    assert answer.status_code == 404 or "doesn’t exist" in html
    if key == "user":
        assert theirs["user"].username not in html
    else:
        assert secret_text not in html


def test_another_organizations_objects_cannot_be_changed_or_deleted_by_url(client, administrator, theirs):
    client.force_login(administrator)
    client.post(url("campaign_profile_change", theirs["profile"].pk), {"email": "x@x.example.com"})
    client.post(url("campaign_apicredential_change", theirs["credential"].pk), {"name": "x", "is_active": ""})
    client.post(url("campaign_profile_delete", theirs["profile"].pk), {"post": "yes"})
    client.post(url("auth_user_delete", theirs["user"].pk), {"post": "yes"})
    client.post(
        url("auth_user_password_change", theirs["user"].pk), {"password1": PASSWORD, "password2": PASSWORD}
    )
    client.post(
        url("campaign_apicredential_changelist"),
        {"action": "revoke", "_selected_action": [theirs["credential"].pk]},
    )
    theirs["profile"].refresh_from_db()
    theirs["credential"].refresh_from_db()
    theirs["user"].refresh_from_db()
    assert theirs["profile"].email == "ceo@acme.example.com"
    assert theirs["credential"].is_active and theirs["credential"].name == "acme-production-key"
    assert theirs["user"].check_password("correct horse battery")


def test_administrator_cannot_create_organizations_nor_change_the_own_id(client, administrator, organization):
    client.force_login(administrator)
    assert client.get(url("campaign_organization_add")).status_code == 403
    page = client.get(url("campaign_organization_change", organization.pk))
    assert page.status_code == 200
    data = change_form_data(page, slug="hijacked", sender_name="Geometrixx News")
    assert client.post(url("campaign_organization_change", organization.pk), data).status_code == 302
    organization.refresh_from_db()
    assert organization.slug == "geometrixx" and organization.sender_name == "Geometrixx News"


# --- Sender domains and the proof allow-list -----------------------------------------------------


def test_administrator_declares_a_sender_domain_normalised_for_the_own_organization(
    client, administrator, organization, other_organization
):
    client.force_login(administrator)
    page = client.get(url("campaign_senderdomain_add"))
    assert 'name="organization"' not in page.content.decode()
    data = change_form_data(page, domain=" Bücher.Example ", organization=str(other_organization.pk))
    assert client.post(url("campaign_senderdomain_add"), data).status_code == 302
    added = SenderDomain.objects.get(domain="xn--bcher-kva.example")
    assert added.organization == organization


@pytest.mark.parametrize(
    ("typed", "error"),
    [
        ("GEOMETRIXX.example.com", "already exists"),
        ("shop@paypal.com", "is an address, not a domain"),
        ("pay_pal.com", "is not a valid domain name"),
        ("x" * 254, "at most 253 characters"),
    ],
)
def test_a_bad_or_duplicate_sender_domain_is_a_form_error(client, administrator, organization, typed, error):
    before = SenderDomain.objects.count()
    client.force_login(administrator)
    page = client.get(url("campaign_senderdomain_add"))
    answer = client.post(url("campaign_senderdomain_add"), change_form_data(page, domain=typed))
    assert answer.status_code == 200
    assert error in " ".join(answer.context["adminform"].form.errors.get("domain", [])) + " ".join(
        answer.context["adminform"].form.non_field_errors()
    )
    assert SenderDomain.objects.count() == before


def test_administrator_sees_only_the_own_sender_domains_and_allow_list(
    client, administrator, other_organization
):
    SenderDomain.objects.create(organization=other_organization, domain="acme-secret.example")
    ProofRecipient.objects.create(
        organization=other_organization, kind="email", value="ceo@acme-secret.example"
    )
    client.force_login(administrator)
    for changelist in ("campaign_senderdomain_changelist", "campaign_proofrecipient_changelist"):
        html = client.get(url(changelist)).content.decode()
        assert "acme-secret" not in html
    theirs = SenderDomain.objects.get(domain="acme-secret.example")
    client.post(url("campaign_senderdomain_delete", theirs.pk), {"post": "yes"})
    assert SenderDomain.objects.filter(pk=theirs.pk).exists()


def test_administrator_adds_proof_allow_list_entries_in_the_form_they_are_compared_in(
    client, administrator, organization
):
    client.force_login(administrator)
    page = client.get(url("campaign_proofrecipient_add"))
    for kind, typed in (
        ("email", "QA@Agency.Example"),
        ("domain", "Agency.Example"),
        ("phone", "+1 415 555 0100"),
    ):
        answer = client.post(
            url("campaign_proofrecipient_add"), change_form_data(page, kind=kind, value=typed)
        )
        assert answer.status_code == 302, answer.context["adminform"].form.errors
    assert set(ProofRecipient.objects.filter(organization=organization).values_list("kind", "value")) == {
        ("email", "qa@agency.example"),
        ("domain", "agency.example"),
        ("phone", "+14155550100"),
    }
    answer = client.post(url("campaign_proofrecipient_add"), change_form_data(page, kind="phone", value="12"))
    assert answer.status_code == 200
    assert "not a valid phone number" in answer.context["adminform"].form.errors["value"][0]


def test_a_profiles_mobile_phone_is_checked_and_kept_in_e164(client, administrator, organization):
    """A test profile's phone is where SMS proofs go: written as people write it, kept as events carry it."""
    profile = ProfileFactory(organization=organization, email="tester@example.com", is_test=True)
    client.force_login(administrator)
    page = client.get(url("campaign_profile_change", profile.pk))
    answer = client.post(
        url("campaign_profile_change", profile.pk), change_form_data(page, mobile_phone="abc")
    )
    assert answer.status_code == 200
    assert "not a phone number" in answer.context["adminform"].form.errors["mobile_phone"][0]
    answer = client.post(
        url("campaign_profile_change", profile.pk), change_form_data(page, mobile_phone="+1 (415) 555-0100")
    )
    assert answer.status_code == 302
    profile.refresh_from_db()
    assert profile.mobile_phone == "+14155550100"


def test_administrator_marks_a_profile_as_a_test_profile(client, administrator, organization):
    profile = ProfileFactory(organization=organization, email="tester@example.com")
    client.force_login(administrator)
    page = client.get(url("campaign_profile_change", profile.pk))
    assert (
        client.post(
            url("campaign_profile_change", profile.pk), change_form_data(page, is_test="on")
        ).status_code
        == 302
    )
    profile.refresh_from_db()
    assert profile.is_test
    assert (
        "tester@example.com"
        in client.get(url("campaign_profile_changelist"), {"is_test__exact": "1"}).content.decode()
    )


def test_the_default_sender_must_be_in_a_declared_domain(client, administrator, organization):
    client.force_login(administrator)
    change = url("campaign_organization_change", organization.pk)
    answer = client.post(change, change_form_data(client.get(change), sender_address="security@paypal.com"))
    assert answer.status_code == 200
    (error,) = answer.context["adminform"].form.errors["sender_address"]
    assert "'security@paypal.com' is not in the organization's sender domains" in error
    assert "Declare its domain under Sender domains first." in error
    organization.refresh_from_db()
    assert organization.sender_address == "news@geometrixx.example.com"
    answer = client.post(change, change_form_data(client.get(change), sender_address="shop@example.com"))
    assert answer.status_code == 302


def test_a_superuser_creating_an_organization_declares_its_senders_domain(client):
    client.force_login(UserFactory(is_superuser=True))
    page = client.get(url("campaign_organization_add"))
    data = change_form_data(page, slug="newco", name="New Co", sender_address="shop@newco.example")
    assert client.post(url("campaign_organization_add"), data).status_code == 302
    assert list(Organization.objects.get(slug="newco").sender_domains.values_list("domain", flat=True)) == [
        "newco.example"
    ]


# --- Profiles and the quarantine ------------------------------------------------------------------


def test_a_profile_created_by_an_administrator_belongs_to_the_administrators_organization(
    client, administrator, organization, other_organization
):
    client.force_login(administrator)
    page = client.get(url("campaign_profile_add"))
    html = page.content.decode()
    assert 'name="organization"' not in html and "acme" not in html  # no organization to choose
    data = change_form_data(
        page, email="new@example.com", first_name="New", organization=str(other_organization.pk)
    )
    assert client.post(url("campaign_profile_add"), data).status_code == 302
    assert Profile.objects.get(email="new@example.com").organization == organization


def test_a_duplicate_profile_email_is_a_form_error_not_a_server_error(client, administrator, organization):
    ProfileFactory(organization=organization, email="jack@example.com")
    client.force_login(administrator)
    page = client.get(url("campaign_profile_add"))
    answer = client.post(url("campaign_profile_add"), change_form_data(page, email="JACK@example.com"))
    assert answer.status_code == 200
    (error,) = answer.context["adminform"].form.errors["email"]
    assert error == "A profile with this email already exists in this organization."
    assert Profile.objects.filter(organization=organization).count() == 1


def test_the_same_profile_email_in_another_organization_is_fine(client, administrator, theirs):
    client.force_login(administrator)
    page = client.get(url("campaign_profile_add"))
    answer = client.post(url("campaign_profile_add"), change_form_data(page, email="ceo@acme.example.com"))
    assert answer.status_code == 302
    assert Profile.objects.filter(email="ceo@acme.example.com").count() == 2


def test_a_duplicate_quarantined_address_is_a_form_error_not_a_server_error(client, administrator, ours):
    client.force_login(administrator)
    page = client.get(url("campaign_quarantine_add"))
    data = change_form_data(page, channel="email", address="bounced@geometrixx.example.com")
    answer = client.post(url("campaign_quarantine_add"), data)
    assert answer.status_code == 200
    assert "already exists" in str(answer.context["adminform"].form.non_field_errors())
    assert Quarantine.objects.filter(address="bounced@geometrixx.example.com").count() == 1


# --- API credentials ------------------------------------------------------------------------------


def test_a_new_credential_shows_its_secret_once_and_stores_it_only_hashed(
    client, administrator, organization
):
    client.force_login(administrator)
    page = client.get(url("campaign_apicredential_add"))
    assert 'name="organization"' not in page.content.decode()
    created = client.post(url("campaign_apicredential_add"), change_form_data(page, name="website"))
    assert created.status_code == 302
    answer = client.get(created["Location"])
    assert answer.status_code == 200
    (shown,) = [m for m in flash_messages(answer) if "client secret" in m]
    api_key, secret = re.search(r"API key: (\S+) — client secret: (\S+)", shown).groups()
    # The secret travels in no cookie: the browser keeps only the (HttpOnly) session id.
    for response in (created, answer):
        assert all(secret not in unquote(cookie.value) for cookie in response.cookies.values())
    assert client.cookies["sessionid"]["httponly"]

    credential = ApiCredential.objects.get(name="website")
    assert credential.organization == organization and credential.api_key == api_key
    assert credential.secret_hash == hash_secret(secret) and secret not in credential.secret_hash
    again = client.get(url("campaign_apicredential_change", credential.pk)).content.decode()
    assert secret not in again and credential.secret_hash not in again

    token = client.post(
        "/ims/token/v3", {"grant_type": "client_credentials", "client_id": api_key, "client_secret": secret}
    )
    assert token.status_code == 200 and token.json()["token_type"] == "bearer"


def test_unticking_active_revokes_the_credential_and_its_tokens(
    client, administrator, organization, cart_configuration
):
    api = api_client_for(organization)
    assert api.get(f"{CART_URL}/unknown").status_code == 404  # authenticated (and now cached)
    client.force_login(administrator)
    change = url("campaign_apicredential_change", api.credential.pk)
    data = change_form_data(client.get(change))
    del data["is_active"]
    assert client.post(change, data).status_code == 302
    api.credential.refresh_from_db()
    assert not api.credential.is_active
    assert not AccessToken.objects.filter(credential=api.credential).exists()
    assert api.get(f"{CART_URL}/unknown").status_code == 401


def test_a_revoked_credential_cannot_be_ticked_active_again(client, administrator, organization):
    api = api_client_for(organization)
    client.force_login(administrator)
    client.post(
        url("campaign_apicredential_changelist"),
        {"action": "revoke", "_selected_action": [api.credential.pk]},
    )
    api.credential.refresh_from_db()
    assert not api.credential.is_active
    change = url("campaign_apicredential_change", api.credential.pk)
    page = client.get(change)
    assert 'name="is_active"' not in page.content.decode()
    client.post(change, change_form_data(page, is_active="on"))
    api.credential.refresh_from_db()
    assert not api.credential.is_active


def test_the_revoke_action_stops_the_credentials_tokens_at_once(
    client, administrator, organization, cart_configuration
):
    api = api_client_for(organization)
    assert api.get(f"{CART_URL}/unknown").status_code == 404
    client.force_login(administrator)
    answer = client.post(
        url("campaign_apicredential_changelist"),
        {"action": "revoke", "_selected_action": [api.credential.pk]},
        follow=True,
    )
    assert "1 credential(s) revoked." in flash_messages(answer)
    assert api.get(f"{CART_URL}/unknown").status_code == 401


def test_deleting_a_token_in_the_admin_stops_it_at_once(
    client, administrator, organization, cart_configuration
):
    api = api_client_for(organization)
    assert api.get(f"{CART_URL}/unknown").status_code == 404
    token = AccessToken.objects.get(credential=api.credential)
    client.force_login(administrator)
    answer = client.post(url("campaign_accesstoken_delete", token.pk), {"post": "yes"})
    assert answer.status_code == 302
    assert api.get(f"{CART_URL}/unknown").status_code == 401


def test_deleting_a_credential_in_the_admin_stops_its_tokens_at_once(
    client, administrator, organization, cart_configuration
):
    api = api_client_for(organization)
    assert api.get(f"{CART_URL}/unknown").status_code == 404
    client.force_login(administrator)
    client.post(
        url("campaign_apicredential_changelist"),
        {"action": "delete_selected", "_selected_action": [api.credential.pk], "post": "yes"},
    )
    assert not ApiCredential.objects.filter(pk=api.credential.pk).exists()
    assert api.get(f"{CART_URL}/unknown").status_code == 401


# --- Users ------------------------------------------------------------------------------------------


def test_administrator_creates_a_marketer_of_the_own_organization(client, administrator, organization):
    client.force_login(administrator)
    page = client.get(url("auth_user_add"))
    html = page.content.decode()
    offered = set(re.findall(r'<option value="\d+"[^>]*>([^<]+)</option>', html))
    assert offered == {"Administrators", "Marketers"}
    assert 'name="is_superuser"' not in html and 'name="user_permissions"' not in html

    marketers = Group.objects.get(name=MARKETERS)
    data = change_form_data(
        page,
        username="jane",
        password1=PASSWORD,
        password2=PASSWORD,
        groups=[str(marketers.pk)],
        is_superuser="on",  # forged: the page has no such field
        user_permissions=["1"],
    )
    answer = client.post(url("auth_user_add"), data)
    assert answer.status_code == 302, answer.context and answer.context["adminform"].form.errors
    jane = User.objects.get(username="jane")
    assert jane.membership.organization == organization
    assert jane.is_staff and not jane.is_superuser
    assert list(jane.groups.values_list("name", flat=True)) == [MARKETERS]
    assert not jane.user_permissions.exists()
    assert jane.check_password(PASSWORD)


def test_a_user_cannot_be_given_a_group_other_than_the_two_roles(client, administrator):
    other = Group.objects.create(name="Operators")
    client.force_login(administrator)
    page = client.get(url("auth_user_add"))
    data = change_form_data(
        page, username="jane", password1=PASSWORD, password2=PASSWORD, groups=[str(other.pk)]
    )
    answer = client.post(url("auth_user_add"), data)
    assert answer.status_code == 200
    assert "groups" in answer.context["adminform"].form.errors
    assert not User.objects.filter(username="jane").exists()


def test_changing_a_user_cannot_make_a_superuser_nor_move_them(
    client, administrator, marketer, other_organization
):
    client.force_login(administrator)
    change = url("auth_user_change", marketer.pk)
    page = client.get(change)
    administrators = Group.objects.get(name=ADMINISTRATORS)
    data = change_form_data(page, groups=[str(administrators.pk)], is_superuser="on", _save="Save")
    data["membership-0-organization"] = str(other_organization.pk)
    assert client.post(change, data).status_code == 302
    marketer.refresh_from_db()
    assert not marketer.is_superuser
    assert list(marketer.groups.values_list("name", flat=True)) == [ADMINISTRATORS]
    assert Membership.objects.get(user=marketer).organization.slug == "geometrixx"


def test_the_user_list_filter_offers_only_the_roles(client, administrator):
    Group.objects.create(name="Operators")
    client.force_login(administrator)
    html = client.get(url("auth_user_changelist")).content.decode()
    assert "Operators" not in html


def test_administrator_cannot_manage_roles(client, administrator):
    client.force_login(administrator)
    assert client.get(url("auth_group_changelist")).status_code == 403
    assert client.get(url("auth_group_change", Group.objects.get(name=MARKETERS).pk)).status_code == 403


def test_a_staff_user_without_an_organization_sees_nothing(client, organization):
    stray = UserFactory()
    stray.groups.add(Group.objects.get(name=ADMINISTRATORS))
    client.force_login(stray)
    assert client.get(url("campaign_profile_changelist")).status_code == 403
    assert client.get(url("events_eventconfiguration_changelist")).status_code == 403


def test_a_superuser_sees_every_organization(client, ours, theirs):
    root = UserFactory(is_superuser=True)
    client.force_login(root)
    html = client.get(url("campaign_profile_changelist")).content.decode()
    assert "jack@geometrixx.example.com" in html and "ceo@acme.example.com" in html
    assert Organization.objects.count() == 2
