"""End to end: typology and fatigue rules with the real worker and SMTP server. A profile-based
message that a rule excludes ends `ignored`, with the rule's code and name in the event's stored
reason (the API's GET keeps Adobe's shape: the status only); event-based messages pass no rule."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from django.utils import timezone

from events.models import Event, FilterCondition, ProfileSend, Typology, TypologyRule
from tests.conftest import CART_EVENT, SEED_BODY, publish_events
from tests.e2e.test_event_flow import FUTURE, final_status, post_event
from tests.factories import ProfileFactory

pytestmark = [pytest.mark.e2e]

WELCOME = {
    "name": "welcome",
    "channel": "email",
    "targeting": "profile",
    "fields": [{"name": "email", "type": "email"}, {"name": "plan", "type": "text"}],
    "reconciliation": {"eventField": "email", "profileField": "email"},
    "message": {"subject": "Welcome {{ profile.firstName }}", "text": "Your plan: {{ ctx.plan }}"},
}
WELCOME_URL = "/geometrixx/campaign/mcgeometrixx/EVTwelcome"


def stored_reason(pkey: str) -> str:
    return Event.objects.get(pkey=pkey).status_changes.order_by("-id").first().reason


def welcome(stack, headers, email="jane@example.com", plan="gold") -> str:
    return post_event(stack, headers, {"ctx": {"email": email, "plan": plan}}, url=WELCOME_URL)


def test_an_opted_out_profile_is_ignored_by_the_denylist_while_an_event_based_email_to_it_goes_out(
    stack, geometrixx
):
    publish_events(geometrixx, copy.deepcopy(CART_EVENT), copy.deepcopy(WELCOME))
    ProfileFactory(organization=geometrixx, email="jane@example.com", opted_out_email=True)
    headers = stack.token_headers(geometrixx)

    excluded = welcome(stack, headers)
    assert final_status(stack, headers, excluded, url=WELCOME_URL) == "ignored"
    assert stored_reason(excluded) == "denylist: Address on denylist"
    live = {**copy.deepcopy(SEED_BODY), "expiration": FUTURE, "scheduled": None, "email": "jane@example.com"}
    sent = post_event(stack, headers, live)
    assert final_status(stack, headers, sent) == "processed"
    (received,) = stack.mailbox.wait_for(1)
    assert received.recipients == ["jane@example.com"] and received.subject == "Jack, your cart is waiting"


def test_the_duplicate_rule_within_its_window_and_not_after_it(stack, geometrixx):
    publish_events(geometrixx, copy.deepcopy(WELCOME))
    default = Typology.objects.get(organization=geometrixx, is_default=True)
    TypologyRule.objects.create(
        typology=default, kind="duplicate", code="duplicate", name="Same within 10 min", window_minutes=10
    )
    ProfileFactory(organization=geometrixx, email="jane@example.com", first_name="Jane")
    headers = stack.token_headers(geometrixx)

    first = welcome(stack, headers)
    assert final_status(stack, headers, first, url=WELCOME_URL) == "processed"
    again = welcome(stack, headers)
    assert final_status(stack, headers, again, url=WELCOME_URL) == "ignored"
    assert stored_reason(again) == "duplicate: Same within 10 min"
    other = welcome(stack, headers, plan="silver")  # another ctx: no duplicate
    assert final_status(stack, headers, other, url=WELCOME_URL) == "processed"

    ProfileSend.objects.update(admitted_at=timezone.now() - dt.timedelta(minutes=11))  # the window passed
    later = welcome(stack, headers)
    assert final_status(stack, headers, later, url=WELCOME_URL) == "processed"
    received = stack.mailbox.wait_for(3)
    assert [m.part("text/plain").strip() for m in received] == [
        "Your plan: gold",
        "Your plan: silver",
        "Your plan: gold",
    ]


def test_a_profile_filter_built_in_the_admin_excludes_the_profiles_that_match(stack, geometrixx):
    publish_events(geometrixx, copy.deepcopy(WELCOME))
    default = Typology.objects.get(organization=geometrixx, is_default=True)
    rule = TypologyRule.objects.create(
        typology=default, kind="filter", code="no_minors", name="No minors", combine="and"
    )
    FilterCondition.objects.create(rule=rule, field="age", operator="lessThan", value="18")
    ProfileFactory(organization=geometrixx, email="kid@example.com", data={"age": "12"})
    ProfileFactory(organization=geometrixx, email="adult@example.com", data={"age": "40"})
    headers = stack.token_headers(geometrixx)

    kid, adult = welcome(stack, headers, "kid@example.com"), welcome(stack, headers, "adult@example.com")
    assert final_status(stack, headers, kid, url=WELCOME_URL) == "ignored"
    assert stored_reason(kid) == "no_minors: No minors"
    assert final_status(stack, headers, adult, url=WELCOME_URL) == "processed"
    (received,) = stack.mailbox.wait_for(1)
    assert received.recipients == ["adult@example.com"]
