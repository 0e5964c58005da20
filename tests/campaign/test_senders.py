"""Sender domains and the proof rules of campaign.senders: exact domain match, the allow-list, and
the proof quota counted in the database."""

from __future__ import annotations

import pytest
from django.test import override_settings

from campaign import senders
from campaign.models import FailureWindow, ProofRecipient, SenderDomain
from messages.channels import channel
from tests.factories import OrganizationFactory, ProfileFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop():
    return OrganizationFactory(
        slug="shop", sender_address="news@shop.example", sender_domains=["shop.example"]
    )


def test_a_sender_must_be_in_a_declared_domain_exactly_not_a_subdomain_nor_a_lookalike(shop):
    assert (
        senders.sender_problems(organization=shop, from_address="a@shop.example", reply_to="b@SHOP.example")
        == {}
    )
    for outside in (
        "security@paypal.com",
        "a@mail.shop.example",
        "a@shop.example.evil.com",
        "a@notshop.example",
    ):
        problems = senders.sender_problems(organization=shop, from_address=outside, reply_to=outside)
        assert set(problems) == {"from", "replyTo"}
        assert f"'{outside}' is not in the organization's sender domains (shop.example)" in problems["from"]


def test_without_its_own_from_an_email_is_checked_with_the_organizations_default_sender(shop):
    SenderDomain.objects.filter(organization=shop).delete()
    problems = senders.sender_problems(organization=shop, from_address="", reply_to="")
    assert problems["from"].startswith("the organization's default sender is used")
    assert "has none yet" in problems["from"]
    # An SMS or a push sends no email address: the default sender does not apply.
    assert (
        senders.sender_problems(organization=shop, from_address="", reply_to="", uses_default_sender=False)
        == {}
    )


def test_declaring_normalises_refuses_duplicates_and_removing_an_unknown_domain_says_so(shop):
    assert (
        senders.declare_sender_domain(organization=shop, domain=" Mail.Shop.Example ").domain
        == "mail.shop.example"
    )
    with pytest.raises(senders.SenderError, match="already has the sender domain mail.shop.example"):
        senders.declare_sender_domain(organization=shop, domain="MAIL.shop.example")
    with pytest.raises(senders.SenderError, match="not a valid domain name"):
        senders.declare_sender_domain(organization=shop, domain="bad_domain.example")
    assert senders.remove_sender_domain(organization=shop, domain="mail.shop.example.") == "mail.shop.example"
    with pytest.raises(senders.SenderError, match="has no sender domain mail.shop.example"):
        senders.remove_sender_domain(organization=shop, domain="mail.shop.example")
    assert senders.declared_domains(shop) == ["shop.example"]


def test_proofs_may_go_to_test_profiles_and_the_allow_list_only(shop):
    other = OrganizationFactory(slug="other")
    ProfileFactory(organization=shop, email="tester@shop.example", mobile_phone="+33612345678", is_test=True)
    ProfileFactory(organization=shop, email="customer@gmail.example", mobile_phone="+33699999999")
    ProofRecipient.objects.create(organization=shop, kind="email", value="qa@agency.example")
    ProofRecipient.objects.create(organization=shop, kind="domain", value="team.example")
    ProofRecipient.objects.create(organization=shop, kind="phone", value="+14155550100")
    ProofRecipient.objects.create(organization=shop, kind="push", value="device-token-1")
    ProofRecipient.objects.create(organization=other, kind="domain", value="gmail.example")

    def allowed(name: str, address: str) -> bool:
        # Each channel asks campaign.senders in its own way (messages.channels.<name>).
        return channel(name).proof_allowed(organization=shop, address=address)

    assert allowed("email", "tester@shop.example") and allowed("email", "qa@agency.example")
    assert allowed("email", "anyone@team.example")
    assert not allowed("email", "anyone@sub.team.example")
    assert not allowed("email", "customer@gmail.example")  # a profile, but not a test profile
    assert not allowed("email", "boss@agency.example")
    assert allowed("sms", "+33612345678") and allowed("sms", "+14155550100")
    assert not allowed("sms", "+33699999999")
    assert allowed("push", "device-token-1") and not allowed("push", "device-token-2")


@override_settings(PROOF_RATE_PER_MINUTE=10)
def test_the_proof_quota_is_counted_per_user_in_the_database_and_a_refusal_counts_nothing(shop):
    for _ in range(9):
        senders.count_proofs(organization=shop, user_id=1, recipients=1)
    with pytest.raises(senders.ProofRefused, match="at most 10 proofs a minute"):
        senders.count_proofs(organization=shop, user_id=1, recipients=2)
    senders.count_proofs(organization=shop, user_id=1, recipients=1)  # the 10th
    with pytest.raises(senders.ProofRefused, match="try again in"):
        senders.count_proofs(organization=shop, user_id=1, recipients=1)
    senders.count_proofs(organization=shop, user_id=2, recipients=10)  # another user has their own
    assert FailureWindow.objects.get(key="proof:user:1").count == 10


@pytest.mark.parametrize(
    ("kind", "typed", "stored"),
    [
        ("email", " QA@Agency.Example ", "qa@agency.example"),
        ("domain", "Team.Example.", "team.example"),
        ("phone", "+1 415 555 0100", "+14155550100"),
        ("push", " token-1 ", "token-1"),
    ],
)
def test_an_allow_list_entry_is_stored_in_the_form_it_is_compared_in(shop, kind, typed, stored):
    entry = ProofRecipient(organization=shop, kind=kind, value=typed)
    entry.full_clean()
    assert entry.value == stored


@pytest.mark.parametrize(
    ("kind", "typed"),
    [("email", "not-an-address"), ("domain", "a@b.example"), ("phone", "12"), ("push", "two words")],
)
def test_a_bad_allow_list_entry_is_refused_on_its_value(shop, kind, typed):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        ProofRecipient(organization=shop, kind=kind, value=typed).full_clean()
    assert set(refused.value.message_dict) == {"value"}


QUOTA_SCRIPT = """
from campaign import senders
from campaign.models import Organization
try:
    senders.count_proofs(organization=Organization.objects.get(slug="geometrixx"), user_id=7, recipients=3)
    print("counted")
except senders.ProofRefused:
    print("refused")
"""


def test_the_proof_quota_holds_across_processes_started_together(cli):
    """Four processes ask for 3 proofs each at once, with a quota of 10: three are counted, one is
    refused, whatever their order, and the count in the database is 9."""
    results = cli.run_all([["shell", "--command", QUOTA_SCRIPT]] * 4)
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert sorted(r.stdout.split()[-1] for r in results) == ["counted", "counted", "counted", "refused"]
    assert cli.rows("SELECT count FROM campaign_failurewindow WHERE key = 'proof:user:7'") == [(9,)]


@pytest.mark.django_db(transaction=True)
def test_the_proof_quota_holds_for_concurrent_requests_on_postgresql(settings):
    """Eight requests for 3 proofs each at once, each on its own connection, with a quota of 10:
    exactly three are counted. (SQLite serialises its writers anyway: the test above covers it.)"""
    import threading

    from django.db import connection, connections

    if connection.vendor != "postgresql":
        pytest.skip("concurrent connections: PostgreSQL only (SQLite is covered by the multi-process test)")
    settings.PROOF_RATE_PER_MINUTE = 10
    shop = OrganizationFactory(slug="shop")
    start, outcomes = threading.Barrier(8), []

    def request() -> None:
        try:
            start.wait()
            senders.count_proofs(organization=shop, user_id=7, recipients=3)
            outcomes.append("counted")
        except senders.ProofRefused:
            outcomes.append("refused")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["counted"] * 3 + ["refused"] * 5
    assert FailureWindow.objects.get(key="proof:user:7").count == 9
