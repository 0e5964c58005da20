"""End to end: an event's timeline through the real stack (gunicorn, a Celery worker on Redis, SMTP on
loopback), for a processed, an ignored, a retried-then-processed and a deliveryFailed event."""

from __future__ import annotations

import copy
import datetime as dt
import os

import pytest
from django.utils import timezone

from campaign.models import Quarantine
from tests.conftest import CART_EVENT, CART_URL, SEED_BODY, publish_events
from tests.e2e.stack import http
from tests.e2e.test_event_flow import final_status, post_event

pytestmark = [pytest.mark.e2e]
FUTURE = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.768Z")


def timeline(stack, headers, pkey) -> dict:
    status, body = http("GET", f"{stack.base_url}{CART_URL}/{pkey}/timeline", headers=headers)
    assert status == 200, body
    return body


def status_codes(told) -> list[tuple[str, str]]:
    return [(s["to"], s["code"]) for s in told["steps"] if s["step"] == "statusChanged"]


def test_the_timelines_of_events_that_ended_each_way(stack, geometrixx):
    publish_events(geometrixx, copy.deepcopy(CART_EVENT))
    headers = stack.token_headers(geometrixx)
    live = {**copy.deepcopy(SEED_BODY), "expiration": FUTURE, "scheduled": None}
    Quarantine.objects.create(organization=geometrixx, channel="email", address="blocked@example.com")
    pkeys = {
        "processed": post_event(stack, headers, {**live, "email": "ok@example.com"}),
        "ignored": post_event(stack, headers, {**live, "email": "blocked@example.com"}),
        "retried": post_event(stack, headers, {**live, "email": "flaky@example.com"}),
        "rejected": post_event(stack, headers, {**live, "email": "reject@example.com"}),
        "unavailable": post_event(stack, headers, {**live, "email": "tempfail@example.com"}),
    }
    wanted = {
        "processed": "processed",
        "ignored": "ignored",
        "retried": "processed",
        "rejected": "deliveryFailed",
        "unavailable": "deliveryFailed",
    }
    for name, pkey in pkeys.items():
        assert final_status(stack, headers, pkey, wanted=wanted[name]) == wanted[name]
    told = {name: timeline(stack, headers, pkey) for name, pkey in pkeys.items()}

    # Processed: claimed by the worker process (not this one), routed to version 1, sent; the
    # delivery's Message-ID is the one the SMTP server received.
    processed = told["processed"]
    assert processed["truncated"] is False and processed["status"] == "processed"
    assert [s["step"] for s in processed["steps"]] == [
        "received",
        "statusChanged",
        "routed",
        "delivery",
        "attempt",
        "statusChanged",
    ]
    assert status_codes(processed) == [("processing", "claimed"), ("processed", "sent")]
    claimed = processed["steps"][1]
    host, pid = claimed["worker"].rsplit(":", 1)
    assert host and pid.isdigit() and int(pid) != os.getpid()
    assert processed["steps"][2]["version"] == 1
    (received,) = stack.mailbox.to("ok@example.com")
    delivery = processed["steps"][3]
    assert delivery["outcome"] == "sent" and delivery["messageId"] == received.message["Message-ID"]
    assert delivery["providerResponse"].startswith("250")
    attempt = processed["steps"][4]
    assert attempt["worker"] == claimed["worker"] and attempt["durationMs"] >= delivery["durationMs"] >= 0

    # Ignored: the quarantine's code, and no delivery.
    assert status_codes(told["ignored"]) == [("processing", "claimed"), ("ignored", "quarantined")]
    assert not [s for s in told["ignored"]["steps"] if s["step"] == "delivery"]

    # Retried then processed: a 451 once, a retry scheduled, then sent on the second attempt.
    retried = told["retried"]
    assert status_codes(retried) == [
        ("processing", "claimed"),
        ("pending", "retryScheduled"),
        ("processing", "claimed"),
        ("processed", "sent"),
    ]
    deliveries = [s for s in retried["steps"] if s["step"] == "delivery"]
    assert [(d["attempt"], d["outcome"]) for d in deliveries] == [(1, "temporaryFailure"), (2, "sent")]
    assert deliveries[0]["providerResponse"].startswith("451") and deliveries[0]["messageId"] is None
    assert deliveries[1]["messageId"] == stack.mailbox.to("flaky@example.com")[0].message["Message-ID"]

    # Failed for good: refused with 5.1.1 at once; refused for now on every attempt.
    assert status_codes(told["rejected"])[-1] == ("deliveryFailed", "providerRejected:5.1.1")
    assert status_codes(told["unavailable"]) == [
        ("processing", "claimed"),
        ("pending", "retryScheduled"),
        ("processing", "claimed"),
        ("deliveryFailed", "providerUnavailable"),  # EVENT_MAX_ATTEMPTS is 2 in the stack
    ]

    # No ctx value and no full address in any story.
    for story in told.values():
        text = str(story)
        assert "Jack" not in text and "Leather" not in text and "@example.com" not in text.replace("***@", "")
