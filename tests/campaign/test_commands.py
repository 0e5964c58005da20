"""create_organization, create_api_credential and import_profiles, as operators and scripts run them."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from campaign.models import ApiCredential, Organization, Profile, hash_secret
from tests.cli import assert_bad_input
from tests.factories import ProfileFactory


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# --- create_organization -----------------------------------------------------------------------


def test_create_organization_prints_its_api_path_and_stores_it(cli):
    result = cli.run("create_organization", "newco", "--name", "New Co")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Created organization newco (API: /newco/campaign/mcnewco/)"
    assert result.stderr == ""
    assert cli.rows("SELECT name FROM campaign_organization WHERE slug = 'newco'") == [("New Co",)]


def test_refused_organization_ids_exit_2_with_one_line_and_create_nothing(cli):
    before = cli.count("campaign_organization")
    duplicate, invalid, reserved, reserved_upper = cli.run_all(
        [
            ["create_organization", "geometrixx"],
            ["create_organization", "not an id!"],
            ["create_organization", "admin"],
            ["create_organization", "IMS"],
        ]
    )
    for result in (duplicate, invalid, reserved, reserved_upper):
        assert_bad_input(result)
    assert "already exists" in duplicate.stderr
    assert "letters, digits" in invalid.stderr
    assert "'admin' is reserved" in reserved.stderr
    assert "reserved" in reserved_upper.stderr
    assert cli.count("campaign_organization") == before


@pytest.mark.django_db
def test_create_organization_uses_the_id_as_name_by_default():
    assert "Created organization geometrixx" in run("create_organization", "geometrixx")
    organization = Organization.objects.get(slug="geometrixx")
    assert organization.name == "geometrixx" and organization.api_name == "mcgeometrixx"


@pytest.mark.django_db
def test_create_organization_with_a_sender_that_is_not_an_address_is_refused():
    with pytest.raises(CommandError) as refused:
        call_command("create_organization", "geometrixx", "--sender", "not-an-address")
    assert refused.value.returncode == 2
    assert str(refused.value) == "--sender: Enter a valid email address."
    assert not Organization.objects.exists()


@pytest.mark.django_db
def test_create_organization_with_a_too_long_name_names_the_option_once():
    with pytest.raises(CommandError) as refused:
        call_command("create_organization", "geometrixx", "--name", "x" * 201)
    assert str(refused.value).startswith("--name: ") and str(refused.value).count("--name") == 1
    assert not Organization.objects.exists()


def test_create_organization_with_a_bad_sender_says_so_on_one_line(cli):
    result = cli.run("create_organization", "acme2", "--sender", "notanemail")
    assert_bad_input(result)
    assert "--sender" in result.stderr and "valid email address" in result.stderr
    assert cli.rows("SELECT COUNT(*) FROM campaign_organization WHERE slug = 'acme2'") == [(0,)]


def test_create_organization_with_a_sender_declares_its_domain(cli):
    result = cli.run("create_organization", "newco", "--sender", "Shop@NewCo.Example")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Created organization newco (API: /newco/campaign/mcnewco/)",
        "Sender domain: newco.example",
    ]
    assert sender_domains(cli, "newco") == ["newco.example"]


# --- sender_domain -----------------------------------------------------------------------------


def sender_domains(cli, organization: str) -> list[str]:
    return [
        domain
        for (domain,) in cli.rows(
            "SELECT d.domain FROM campaign_senderdomain d JOIN campaign_organization o "
            "ON o.id = d.organization_id WHERE o.slug = ? ORDER BY d.domain",
            (organization,),
        )
    ]


def test_sender_domain_adds_lists_and_removes_normalised_domains(cli):
    added = cli.run("sender_domain", "geometrixx", "add", " Bücher.Example. ")
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "Sender domain xn--bcher-kva.example added to geometrixx."
    listed = cli.run("sender_domain", "geometrixx", "list")
    assert listed.stdout.splitlines() == ["geometrixx.example", "xn--bcher-kva.example"]
    removed = cli.run("sender_domain", "geometrixx", "remove", "GEOMETRIXX.example")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.strip() == "Sender domain geometrixx.example removed from geometrixx."
    assert sender_domains(cli, "geometrixx") == ["xn--bcher-kva.example"]
    assert sender_domains(cli, "acme") == []


def test_bad_sender_domain_commands_exit_2_with_one_line_and_change_nothing(cli):
    cases = {
        "unknown organization": (["nobody", "add", "example.com"], "No organization 'nobody'"),
        "unknown action": (["geometrixx", "replace", "example.com"], "invalid choice: 'replace'"),
        "no domain": (["geometrixx", "add"], "needs a DOMAIN"),
        "an address": (["geometrixx", "add", "shop@paypal.com"], "is an address, not a domain"),
        "a bad name": (["geometrixx", "add", "pay_pal.com"], "'pay_pal.com' is not a valid domain name"),
        "a single label": (["geometrixx", "add", "com"], "not a full domain name"),
        "too long": (["geometrixx", "add", "a" * 300 + ".com"], "at most 253 characters"),
        "a duplicate": (["geometrixx", "add", "Geometrixx.Example"], "already has the sender domain"),
        "an unknown removal": (["acme", "remove", "example.com"], "acme has no sender domain example.com"),
    }
    results = cli.run_all([["sender_domain", *arguments] for arguments, _ in cases.values()])
    for (case, (_, expected)), result in zip(cases.items(), results, strict=True):
        assert_bad_input(result)
        assert expected in result.stderr, (case, result.stderr)
    assert sender_domains(cli, "geometrixx") == ["geometrixx.example"]
    assert sender_domains(cli, "acme") == []


def test_a_domain_withdrawn_on_the_command_line_stops_the_next_publication(cli, tmp_path):
    """The README's own set-up publishes the example file; once its domain is withdrawn, the CLI's
    publish of the message is refused (the version already live keeps sending)."""
    assert cli.run("message", "geometrixx", "EVTcartAbandonment", "publish").returncode == 0
    assert cli.run("sender_domain", "geometrixx", "remove", "geometrixx.example").returncode == 0
    result = cli.run("message", "geometrixx", "EVTcartAbandonment", "publish")
    assert_bad_input(result)
    assert "from: 'shop@geometrixx.example' is not in a sender domain" in result.stderr


# --- create_api_credential ---------------------------------------------------------------------


def test_create_api_credential_prints_exactly_one_json_object_and_stores_the_secret_hashed(cli):
    result = cli.run("create_api_credential", "geometrixx")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 1
    issued = json.loads(result.stdout)
    assert set(issued) == {"api_key", "client_secret"}
    assert issued["api_key"] and len(issued["client_secret"]) >= 32
    ((stored_hash,),) = cli.rows(
        "SELECT secret_hash FROM campaign_apicredential WHERE api_key = ?", (issued["api_key"],)
    )
    assert stored_hash == hash_secret(issued["client_secret"])
    assert issued["client_secret"] not in stored_hash


def test_create_api_credential_for_an_unknown_organization_exits_2(cli):
    result = cli.run("create_api_credential", "nobody")
    assert_bad_input(result)
    assert "nobody" in result.stderr
    assert cli.count("campaign_apicredential") == 0


@pytest.mark.django_db
def test_each_credential_gets_its_own_key_and_secret(organization):
    first, second = (json.loads(run("create_api_credential", "geometrixx")) for _ in range(2))
    assert first["api_key"] != second["api_key"] and first["client_secret"] != second["client_secret"]
    stored = set(ApiCredential.objects.values_list("secret_hash", flat=True))
    assert stored == {hash_secret(first["client_secret"]), hash_secret(second["client_secret"])}


# --- import_profiles ---------------------------------------------------------------------------


def write_csv(tmp_path, text: str, encoding: str = "utf-8"):
    path = tmp_path / "profiles.csv"
    path.write_bytes(text.encode(encoding))
    return path


def test_import_profiles_reports_created_and_updated(cli, tmp_path):
    path = write_csv(tmp_path, "email,firstName\njane@example.com,Jane\njohn@example.com,John\n")
    first = cli.run("import_profiles", "geometrixx", str(path))
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "2 profile(s) created, 0 updated."
    path = write_csv(tmp_path, "email,firstName\nJANE@example.com,Janet\n")
    second = cli.run("import_profiles", "geometrixx", str(path))
    assert second.stdout.strip() == "0 profile(s) created, 1 updated."
    assert cli.rows("SELECT email, first_name FROM campaign_profile ORDER BY email") == [
        ("jane@example.com", "Janet"),
        ("john@example.com", "John"),
    ]


def test_bad_profile_files_exit_2_with_one_line_and_write_nothing(cli, tmp_path):
    bad_email = tmp_path / "bad-email.csv"
    bad_email.write_text("email,firstName\nok@example.com,Ok\nnot-an-email,Bad\n", encoding="utf-8")
    no_column = tmp_path / "no-email.csv"
    no_column.write_text("firstName,lastName\nJane,Doe\n", encoding="utf-8")
    not_utf8 = tmp_path / "latin1.csv"
    not_utf8.write_bytes("email,firstName\nzoe@example.com,Zoë\n".encode("latin-1"))
    missing = tmp_path / "missing.csv"
    bad_phone = tmp_path / "bad-phone.csv"
    bad_phone.write_text(
        "email,mobilePhone\nok@example.com,+33612345678\nbad@example.com,abc\n", encoding="utf-8"
    )
    bad_language = tmp_path / "bad-language.csv"
    bad_language.write_text("email,language\nok@example.com,en\nbad@example.com,klingon\n", encoding="utf-8")
    results = cli.run_all(
        [
            ["import_profiles", "geometrixx", str(path)]
            for path in (bad_email, no_column, not_utf8, missing, bad_phone, bad_language)
        ]
    )
    for result in results:
        assert_bad_input(result)
    assert "line 3" in results[0].stderr and "not-an-email" in results[0].stderr
    assert "'email' column" in results[1].stderr
    assert "not UTF-8" in results[2].stderr
    assert "Cannot read" in results[3].stderr
    assert "line 3: mobilePhone: 'abc'" in results[4].stderr
    assert "line 3: language: 'klingon'" in results[5].stderr
    assert cli.count("campaign_profile") == 0


def test_import_profiles_for_an_unknown_organization_exits_2(cli, tmp_path):
    result = cli.run("import_profiles", "nobody", str(write_csv(tmp_path, "email\na@example.com\n")))
    assert_bad_input(result)


@pytest.mark.django_db
def test_import_profiles_keeps_other_columns_as_profile_data_and_reads_booleans(organization, tmp_path):
    path = write_csv(
        tmp_path,
        "email,firstName,lastName,mobilePhone,language,optedOut,loyaltyTier\n"
        "Jane@Example.com,Jane,Doe,+33612345678,fr,yes,gold\n",
    )
    assert run("import_profiles", "geometrixx", str(path)).strip() == "1 profile(s) created, 0 updated."
    profile = Profile.objects.get(organization=organization)
    assert (profile.email, profile.first_name, profile.last_name) == ("jane@example.com", "Jane", "Doe")
    assert (profile.mobile_phone, profile.language, profile.opted_out) == ("+33612345678", "fr", True)
    assert profile.data == {"loyaltyTier": "gold"}


@pytest.mark.django_db
def test_import_profiles_marks_test_profiles_from_an_optional_column(organization, tmp_path):
    ProfileFactory(organization=organization, email="was-test@example.com", is_test=True)
    path = write_csv(
        tmp_path,
        "email,testProfile\ntester@example.com,true\ncustomer@example.com,\nwas-test@example.com,no\n",
    )
    assert run("import_profiles", "geometrixx", str(path)).strip() == "2 profile(s) created, 1 updated."
    assert dict(Profile.objects.values_list("email", "is_test")) == {
        "tester@example.com": True,
        "customer@example.com": False,
        "was-test@example.com": False,
    }
    # Without the column, a profile stays what it was.
    path = write_csv(tmp_path, "email,firstName\ntester@example.com,Tess\n")
    run("import_profiles", "geometrixx", str(path))
    assert Profile.objects.get(email="tester@example.com").is_test
    assert Profile.objects.get(email="tester@example.com").data == {}


@pytest.mark.django_db
def test_import_profiles_normalises_phones_to_e164_as_the_api_does_and_accepts_language_codes(
    organization, tmp_path
):
    path = write_csv(
        tmp_path,
        "email,mobilePhone,language\n"
        "a@example.com,+33 6 12 34 56 78,fr\n"
        "b@example.com,(201) 555-0123,pt-BR\n"
        "c@example.com,,\n",
    )
    assert run("import_profiles", "geometrixx", str(path)).strip() == "3 profile(s) created, 0 updated."
    assert list(Profile.objects.order_by("email").values_list("mobile_phone", "language")) == [
        ("+33612345678", "fr"),
        ("+12015550123", "pt-BR"),
        ("", ""),
    ]


@pytest.mark.django_db
def test_import_profiles_updates_only_the_columns_of_the_file(organization, tmp_path):
    ProfileFactory(organization=organization, email="jane@example.com", first_name="Jane", last_name="Doe")
    path = write_csv(tmp_path, "email,lastName\njane@example.com,Smith\n")
    assert run("import_profiles", "geometrixx", str(path)).strip() == "0 profile(s) created, 1 updated."
    profile = Profile.objects.get(organization=organization)
    assert (profile.first_name, profile.last_name) == ("Jane", "Smith")


@pytest.mark.django_db
def test_import_profiles_updates_a_profile_whose_stored_email_has_capitals(organization, tmp_path):
    ProfileFactory(organization=organization, email="Jane@Example.com", first_name="J")
    path = write_csv(tmp_path, "email,firstName\njane@example.com,Jane\n")
    assert run("import_profiles", "geometrixx", str(path)).strip() == "0 profile(s) created, 1 updated."
    assert list(Profile.objects.values_list("first_name", flat=True)) == ["Jane"]


@pytest.mark.django_db
def test_import_profiles_does_not_touch_another_organizations_profile(
    organization, other_organization, tmp_path
):
    ProfileFactory(organization=other_organization, email="jane@example.com", first_name="Other")
    path = write_csv(tmp_path, "email,firstName\njane@example.com,Jane\n")
    assert run("import_profiles", "geometrixx", str(path)).strip() == "1 profile(s) created, 0 updated."
    assert Profile.objects.get(organization=other_organization).first_name == "Other"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("email,optedOut\na@example.com,maybe", "optedOut: 'maybe' is not true or false"),
        ("email,testProfile\na@example.com,perhaps", "testProfile: 'perhaps' is not true or false"),
        ("email,firstName\na@example.com,A,extra", "more values than header columns"),
        ("email,firstName\na@example.com," + "x" * 201, "firstName: is longer than 200"),
        ("email,language\na@example.com,a-very-long-language-tag", "language: is longer than 16"),
        ("email,firstName\na@example.com,Ja\x00ck", "firstName: contains a NUL character"),
        ("email,note\na@example.com," + "x" * 10_001, "note: is longer than 10000"),
        ("email,firstName\n,Nobody", "email: '' is not an email address"),
        ("email,mobilePhone\na@example.com,abc", "mobilePhone: 'abc' is not a phone number"),
        ("email,mobilePhone\na@example.com,12", "mobilePhone: '12' is not a valid phone number"),
        ("email,language\na@example.com,klingon", "language: 'klingon' is not a language code"),
        ("email,language\na@example.com,e", "language: 'e' is not a language code"),
    ],
)
def test_a_bad_row_rejects_the_whole_profile_file(organization, tmp_path, text, message):
    header, bad_row = text.splitlines()
    good_row = "good@example.com" + "," * header.count(",")
    path = write_csv(tmp_path, f"{header}\n{good_row}\n{bad_row}\n")
    with pytest.raises(CommandError) as refused:
        call_command("import_profiles", "geometrixx", str(path), stdout=io.StringIO())
    assert message in str(refused.value) and "line 3" in str(refused.value)
    assert refused.value.returncode == 2
    assert not Profile.objects.exists()


@pytest.mark.django_db
def test_import_profiles_reads_an_opt_out_per_channel_and_optedout_for_all_of_them(organization, tmp_path):
    path = write_csv(
        tmp_path,
        "email,optedOutSms,optedOut\nall@example.com,,yes\nsms@example.com,true,\n"
        "none@example.com,no,no\nmost@example.com,no,yes\n",
    )
    run("import_profiles", "geometrixx", str(path))
    flags = ("opted_out_email", "opted_out_sms", "opted_out_push")
    found = {
        p.email: tuple(getattr(p, f) for f in flags)
        for p in Profile.objects.filter(organization=organization)
    }
    assert found == {
        "all@example.com": (True, True, True),
        "sms@example.com": (False, True, False),
        "none@example.com": (False, False, False),
        "most@example.com": (True, False, True),
    }
