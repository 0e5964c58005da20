"""Typology and fatigue rules (events.typology): what a profile-based message passes before it is
rendered, decided by the pipeline as a worker runs it; event-based messages pass none of them."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from campaign.models import Organization, Quarantine
from events import pipeline, typology
from events.models import (
    Event,
    FatigueRule,
    FilterCondition,
    ProfileSend,
    Typology,
    TypologyRule,
)
from events.schema import validate_event
from events.services import duplicate_configuration, ingest
from tests.conftest import CART_EVENT, publish_events, seed_body
from tests.factories import OrganizationFactory, ProfileFactory

pytestmark = pytest.mark.django_db
FUTURE = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.000Z")

WELCOME = {
    "name": "welcome",
    "channel": "email",
    "targeting": "profile",
    "fields": [{"name": "email", "type": "email"}, {"name": "plan", "type": "text"}],
    "reconciliation": {"eventField": "email", "profileField": "email"},
    "message": {"subject": "Welcome {{ profile.firstName }}", "html": "<p>{{ ctx.plan }}</p>", "text": ""},
}
NEWS = {**WELCOME, "name": "news", "message": {**WELCOME["message"], "subject": "News"}}


def accept(configuration, ctx=None, **body) -> Event:
    body = {"ctx": ctx or {}, **body}
    event, _ = ingest(
        configuration=configuration, validated=validate_event(configuration.published_schema, body)
    )
    return event


def process(configuration, **ctx) -> Event:
    event = accept(configuration, {"email": "jane@example.com", "plan": "gold", **ctx})
    pipeline.process(event.pk)
    event.refresh_from_db()
    return event


def reason(event: Event) -> str:
    return event.status_changes.order_by("-id").first().reason


@pytest.fixture
def welcome(organization):
    return publish_events(organization, WELCOME)[0]


@pytest.fixture
def jane(organization):
    return ProfileFactory(organization=organization, email="jane@example.com", first_name="Jane")


def default_of(organization) -> Typology:
    return Typology.objects.get(organization=organization, is_default=True)


def filter_rule(typology_, *conditions, combine="and", code="no_free", name="No free plan", position=0):
    rule = TypologyRule.objects.create(
        typology=typology_, kind="filter", code=code, name=name, combine=combine, position=position
    )
    for field, operator, value in conditions:
        FilterCondition.objects.create(rule=rule, field=field, operator=operator, value=value)
    return rule


# --- Address on denylist --------------------------------------------------------------------------------


def test_a_profile_opted_out_of_email_is_ignored_by_the_denylist_rule_and_an_event_based_email_still_goes(
    organization, welcome, jane
):
    jane.opted_out_email = True
    jane.save()
    event = process(welcome)
    assert event.status == "ignored" and reason(event) == "denylist: Address on denylist"
    assert mail.outbox == []

    cart = publish_events(organization, CART_EVENT)[0]
    sent = accept(cart, **{**seed_body(scheduled=None, expiration=FUTURE), "email": "jane@example.com"})
    assert pipeline.process(sent.pk) == "processed"
    assert [m.to for m in mail.outbox] == [["jane@example.com"]]


def test_an_opt_out_of_another_channel_leaves_email_alone(welcome, jane):
    jane.opted_out_sms = jane.opted_out_push = True
    jane.save()
    assert process(welcome).status == "processed"


def test_a_blocklisted_profile_is_on_the_denylist(welcome, jane):
    jane.blocklisted = True
    jane.save()
    assert reason(process(welcome)) == "denylist: Address on denylist"


def test_quarantine_is_not_a_typology_rule_and_still_applies_to_profile_based_messages(
    organization, welcome, jane
):
    Quarantine.objects.create(organization=organization, channel="email", address="jane@example.com")
    event = process(welcome)
    assert event.status == "ignored" and "quarantined" in reason(event)


# --- Duplicate ------------------------------------------------------------------------------------------


def test_the_same_event_for_the_same_profile_within_the_window_is_a_duplicate_and_not_after_it(
    organization, welcome, jane
):
    TypologyRule.objects.create(
        typology=default_of(organization),
        kind="duplicate",
        code="duplicate",
        name="Same within 10 min",
        window_minutes=10,
    )
    assert process(welcome).status == "processed"
    second = process(welcome)
    assert second.status == "ignored" and reason(second) == "duplicate: Same within 10 min"
    assert process(welcome, plan="silver").status == "processed"  # another ctx is no duplicate
    assert len(mail.outbox) == 2

    ProfileSend.objects.update(admitted_at=timezone.now() - dt.timedelta(minutes=11))
    assert process(welcome).status == "processed"


def test_a_failed_send_is_no_earlier_message_for_the_duplicate_rule(organization, welcome, jane):
    TypologyRule.objects.create(
        typology=default_of(organization), kind="duplicate", code="duplicate", name="Dup", window_minutes=10
    )
    first = process(welcome)
    Event.objects.filter(pk=first.pk).update(status="deliveryFailed")
    assert process(welcome).status == "processed"


# --- Profile filters ------------------------------------------------------------------------------------


def test_a_profile_filter_excludes_the_profiles_that_match_it(organization, welcome, jane):
    filter_rule(default_of(organization), ("plan", "equals", "free"), ("country", "equals", "FR"))
    jane.data = {"plan": "free", "country": "FR"}
    jane.save()
    event = process(welcome)
    assert event.status == "ignored" and reason(event) == "no_free: No free plan"
    jane.data = {"plan": "free", "country": "DE"}  # "and": one condition is not enough
    jane.save()
    assert process(welcome).status == "processed"


def test_a_filter_combined_with_or_excludes_on_any_condition(organization, welcome, jane):
    filter_rule(
        default_of(organization), ("lastName", "isEmpty", ""), ("age", "lessThan", "18"), combine="or"
    )
    jane.last_name, jane.data = "Doe", {"age": "17"}
    jane.save()
    assert process(welcome).status == "ignored"
    jane.data = {"age": "42"}
    jane.save()
    assert process(welcome).status == "processed"


@pytest.mark.parametrize(
    ("operator", "value", "actual", "matched"),
    [
        ("equals", "Gold", "gold", True),
        ("notEquals", "gold", "silver", True),
        ("contains", "@EXAMPLE", "jane@example.com", True),
        ("startsWith", "+33", "+33612345678", True),
        ("isEmpty", "", "", True),
        ("isNotEmpty", "", "x", True),
        ("greaterThan", "10", "10.5", True),
        ("greaterThan", "10", "ten", False),  # not a number: no comparison matches
        ("lessThan", "10", None, False),
    ],
)
def test_filter_operators(operator, value, actual, matched):
    rule = typology.Filter("c", "n", "and", (typology.Condition("f", operator, value),))
    assert typology.matches(rule, {"f": actual}) is matched


def test_rules_apply_in_order_the_first_that_excludes_names_the_reason(organization, welcome, jane):
    default = default_of(organization)
    filter_rule(default, ("firstName", "equals", "Jane"), code="second", name="Second", position=2)
    filter_rule(default, ("email", "contains", "jane"), code="first", name="First", position=1)
    assert reason(process(welcome)) == "first: First"


def test_a_configuration_that_picks_another_typology_passes_its_rules_not_the_defaults(
    organization, welcome, jane
):
    filter_rule(default_of(organization), ("firstName", "equals", "Jane"))
    lenient = Typology.objects.create(organization=organization, name="Lenient")
    welcome.typology = lenient
    welcome.save()
    assert process(welcome).status == "processed"


def test_event_based_messages_pass_no_typology_rule(organization):
    filter_rule(default_of(organization), ("email", "isNotEmpty", ""))
    FatigueRule.objects.create(organization=organization, name="None", max_messages=1, period_hours=24)
    cart = publish_events(organization, CART_EVENT)[0]
    for _ in range(2):
        event = accept(cart, **seed_body(scheduled=None, expiration=FUTURE))
        assert pipeline.process(event.pk) == "processed"
    assert not ProfileSend.objects.exists()  # and they never count for fatigue


def test_every_organization_has_a_default_typology(db):
    organization = OrganizationFactory(slug="newcomer")
    assert default_of(organization).name == "Default"
    assert typology.default_typology(organization=organization) == default_of(organization)


# --- Fatigue --------------------------------------------------------------------------------------------


def test_at_most_n_messages_per_profile_per_period_across_the_organizations_messages(
    organization, welcome, jane
):
    news = publish_events(organization, NEWS)[0]
    FatigueRule.objects.create(organization=organization, name="Two a day", max_messages=2, period_hours=24)
    assert process(welcome).status == "processed"
    assert process(news).status == "processed"
    third = process(welcome, plan="silver")
    assert third.status == "ignored" and reason(third) == "fatigue: Two a day"
    assert len(mail.outbox) == 2
    # Another profile has its own count; and a day later, Jane may receive again.
    ProfileFactory(organization=organization, email="ann@example.com")
    assert process(welcome, email="ann@example.com").status == "processed"
    ProfileSend.objects.update(admitted_at=timezone.now() - dt.timedelta(hours=25))
    assert process(welcome).status == "processed"


def test_a_fatigue_rule_of_one_channel_caps_that_channel_only(organization, welcome, jane):
    FatigueRule.objects.create(
        organization=organization, name="SMS", channel="sms", max_messages=1, period_hours=24
    )
    assert [process(welcome, plan=p).status for p in ("a", "b")] == ["processed", "processed"]
    FatigueRule.objects.create(
        organization=organization, name="Email", channel="email", max_messages=2, period_hours=1
    )
    assert reason(process(welcome, plan="c")) == "fatigue: Email"


def test_event_based_sends_never_count_for_fatigue(organization, welcome, jane):
    FatigueRule.objects.create(organization=organization, name="One", max_messages=1, period_hours=24)
    cart = publish_events(organization, CART_EVENT)[0]
    event = accept(cart, **{**seed_body(scheduled=None, expiration=FUTURE), "email": "jane@example.com"})
    assert pipeline.process(event.pk) == "processed"
    assert process(welcome).status == "processed"
    assert process(welcome, plan="again").status == "ignored"


def test_a_message_that_failed_for_good_does_not_count(organization, welcome, jane, smtp_email):
    FatigueRule.objects.create(organization=organization, name="One", max_messages=1, period_hours=24)
    rejected = ProfileFactory(organization=organization, email="reject-me@example.com")
    assert process(welcome, email=rejected.email).status == "deliveryFailed"
    Quarantine.objects.all().delete()
    assert process(welcome, email=rejected.email).status == "deliveryFailed"  # not ignored: fatigue
    # A retry of an admitted message is not counted twice either.
    retried = accept(welcome, {"email": "tempfail@example.com", "plan": "x"})
    ProfileFactory(organization=organization, email="tempfail@example.com")
    assert pipeline.process(retried.pk) == "pending"
    Event.objects.filter(pk=retried.pk).update(next_attempt_at=timezone.now())
    assert pipeline.process(retried.pk) == "pending"
    assert ProfileSend.objects.filter(event=retried).count() == 1


def test_inactive_rules_do_not_apply(organization, welcome, jane):
    rule = filter_rule(default_of(organization), ("firstName", "equals", "Jane"))
    FatigueRule.objects.create(
        organization=organization, name="Off", max_messages=1, period_hours=1, active=False
    )
    rule.active = False
    rule.save()
    assert [process(welcome, plan=p).status for p in ("a", "b")] == ["processed", "processed"]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks: PostgreSQL only")
@pytest.mark.django_db(transaction=True)
def test_concurrent_decisions_for_one_profile_take_turns_under_its_lock():
    """Threads with their own connections, as worker processes: of 12 events and a cap of 3,
    exactly 3 are admitted."""
    organization = Organization.objects.create(slug="locks")
    configuration = publish_events(organization, WELCOME)[0]
    profile = ProfileFactory(organization=organization, email="jane@example.com")
    FatigueRule.objects.create(organization=organization, name="Three", max_messages=3, period_hours=24)
    events = [accept(configuration, {"email": "jane@example.com", "plan": str(n)}) for n in range(12)]
    rules = typology.rules_for(configuration)
    start, answers = threading.Barrier(4), []

    def decide(share: list[Event]) -> None:
        try:
            start.wait()
            for event in share:
                answers.append(
                    typology.admit(
                        event=event, profile=profile, channel="email", rules=rules, now=timezone.now()
                    )
                )
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=(events[n::4],)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(answer is None for answer in answers) == 3
    assert ProfileSend.objects.filter(profile=profile).count() == 3


def test_a_duplicated_configuration_keeps_its_typology(organization, welcome):
    chosen = Typology.objects.create(organization=organization, name="Chosen")
    welcome.typology = chosen
    welcome.save()
    assert duplicate_configuration(configuration=welcome).typology == chosen
