"""End to end: HTTP in (gunicorn), a real Celery worker on Redis, SMTP out (aiosmtpd on loopback)."""

from __future__ import annotations

import copy
import datetime as dt
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from celery import Celery
from django.utils import timezone

from campaign.models import Quarantine
from events import publication
from events.models import Event
from messages.models import Delivery, TransactionalMessage
from tests.conftest import CART_EVENT, CART_URL, SEED_BODY, publish_events
from tests.e2e.stack import http, redis_url, wait_until

pytestmark = [pytest.mark.e2e]
FUTURE = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.768Z")


def final_status(stack, headers, pkey, url=CART_URL, timeout=20.0, wanted=None) -> str:
    seen = {}

    def done():
        status, body = http("GET", f"{stack.base_url}{url}/{pkey}", headers=headers)
        seen["status"] = body.get("status")
        return status == 200 and (
            seen["status"] == wanted if wanted else seen["status"] not in ("pending", "processing")
        )

    wait_until(
        done,
        timeout=timeout,
        what=f"event {pkey} to reach {wanted or 'a final status'}",
        process=stack.worker,
    )
    return seen["status"]


def post_event(stack, headers, body, url=CART_URL) -> str:
    status, answer = http("POST", f"{stack.base_url}{url}", body=body, headers=headers)
    assert status == 201, answer
    return answer["PKey"]


def test_seed_example_becomes_an_email_that_says_jack(stack, geometrixx):
    publish_events(geometrixx, copy.deepcopy(CART_EVENT))
    headers = stack.token_headers(geometrixx)
    body = {**copy.deepcopy(SEED_BODY), "expiration": FUTURE}
    status, answer = http("POST", f"{stack.base_url}{CART_URL}", body=body, headers=headers)
    assert status == 201 and answer["status"] == "pending"
    assert final_status(stack, headers, answer["PKey"]) == "processed"
    (received,) = stack.mailbox.wait_for(1)
    assert received.recipients == ["test@example.com"]
    assert "Jack" in received.part("text/plain") and "Leather motorbike jacket" in received.part("text/html")
    assert received.subject == "Jack, your cart is waiting"


def test_the_seed_example_verbatim_expired_in_2017_becomes_too_old(stack, geometrixx):
    publish_events(geometrixx, copy.deepcopy(CART_EVENT))
    headers = stack.token_headers(geometrixx)
    pkey = post_event(stack, headers, copy.deepcopy(SEED_BODY))
    assert final_status(stack, headers, pkey) == "tooOld"
    assert stack.mailbox.messages == []


def test_every_final_status_is_reached_for_real(stack, geometrixx):
    cart = publish_events(geometrixx, copy.deepcopy(CART_EVENT))[0]
    welcome = publish_events(
        geometrixx,
        {
            "name": "welcome",
            "channel": "email",
            "targeting": "profile",
            "fields": [{"name": "email", "type": "email"}],
            "reconciliation": {"eventField": "email", "profileField": "email"},
            "message": {"subject": "Welcome", "text": "Hello {{ profile.firstName }}"},
        },
    )[0]
    headers = stack.token_headers(geometrixx)
    live = {**copy.deepcopy(SEED_BODY), "expiration": FUTURE, "scheduled": None}
    Quarantine.objects.create(organization=geometrixx, channel="email", address="blocked@example.com")

    expectations = {
        post_event(stack, headers, {**live, "email": "ok@example.com"}): "processed",
        post_event(stack, headers, {**live, "email": "blocked@example.com"}): "ignored",
        post_event(stack, headers, {**live, "email": "reject@example.com"}): "deliveryFailed",
        post_event(stack, headers, {**live, "email": "tempfail@example.com"}): "deliveryFailed",
    }
    for pkey, wanted in expectations.items():
        assert final_status(stack, headers, pkey, wanted=wanted) == wanted
    retried = Event.objects.get(email="tempfail@example.com")
    assert retried.attempts == 2  # EVENT_MAX_ATTEMPTS in the stack
    assert Quarantine.objects.filter(address="reject@example.com").exists()

    welcome_url = "/geometrixx/campaign/mcgeometrixx/EVTwelcome"
    pkey = post_event(stack, headers, {"ctx": {"email": "stranger@example.com"}}, url=welcome_url)
    assert final_status(stack, headers, pkey, url=welcome_url) == "targetingFailed"

    message = TransactionalMessage.objects.get(configuration=cart)
    publication.pause_message(message=message)
    paused = post_event(stack, headers, {**live, "email": "later@example.com"})
    assert final_status(stack, headers, paused, wanted="paused") == "paused"
    publication.resume_message(message=message)
    assert final_status(stack, headers, paused) == "processed"

    soon = (timezone.now() + dt.timedelta(seconds=30)).isoformat()
    scheduled = post_event(stack, headers, {**live, "email": "scheduled@example.com", "scheduled": soon})
    assert welcome.pk  # (kept published)
    from events.publication import unpublish_configuration

    unpublish_configuration(configuration=cart)
    assert final_status(stack, headers, scheduled) == "routingFailed"
    assert http("POST", f"{stack.base_url}{CART_URL}", body=live, headers=headers)[0] == 404
    recipients = sorted(r for m in stack.mailbox.messages for r in m.recipients)
    assert recipients == ["later@example.com", "ok@example.com"]


def test_a_scheduled_event_waits_for_its_date(stack, geometrixx):
    publish_events(geometrixx, copy.deepcopy(CART_EVENT))
    headers = stack.token_headers(geometrixx)
    when = timezone.now() + dt.timedelta(seconds=3)
    pkey = post_event(
        stack, headers, {**copy.deepcopy(SEED_BODY), "expiration": FUTURE, "scheduled": when.isoformat()}
    )
    assert final_status(stack, headers, pkey, timeout=20) == "processed"
    (received,) = stack.mailbox.wait_for(1)
    assert received.received_at >= when.timestamp()


def test_a_burst_of_200_events_yields_200_emails_none_twice(stack, geometrixx):
    publish_events(geometrixx, copy.deepcopy(CART_EVENT))
    headers = stack.token_headers(geometrixx)
    bodies = [
        {**copy.deepcopy(SEED_BODY), "expiration": FUTURE, "scheduled": None, "email": f"user{i}@example.com"}
        for i in range(200)
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        pkeys = list(pool.map(lambda body: post_event(stack, headers, body), bodies))
    assert len(set(pkeys)) == 200
    wait_until(
        lambda: Event.objects.filter(status="processed").count() == 200,
        timeout=90,
        what="200 processed events",
        process=stack.worker,
        interval=0.5,
    )
    received = stack.mailbox.wait_for(200, timeout=10)
    recipients = [r for m in received for r in m.recipients]
    assert len(recipients) == 200 and len(set(recipients)) == 200
    assert Delivery.objects.filter(outcome="sent").count() == 200


def test_duplicated_tasks_never_send_twice(stack, geometrixx):
    publish_events(geometrixx, copy.deepcopy(CART_EVENT))
    headers = stack.token_headers(geometrixx)
    tasks_before = _processing_tasks_done(stack.worker)
    pkey = post_event(stack, headers, {**copy.deepcopy(SEED_BODY), "expiration": FUTURE, "scheduled": None})
    event_id = Event.objects.get(pkey=pkey).pk
    broker = Celery(broker=redis_url())
    for _ in range(5):  # the same task delivered again and again, as a broker may
        broker.send_task("events.process_events", args=[[event_id]], queue="transactional")
    assert final_status(stack, headers, pkey) == "processed"
    wait_until(lambda: Event.objects.get(pk=event_id).status_changes.count() >= 2, timeout=10, what="history")
    # every duplicate ran (one "succeeded" line per task in the worker's log) before counting; the
    # POST itself sends no task (the dispatcher may, unless a duplicate claimed the event first)
    wait_until(
        lambda: _processing_tasks_done(stack.worker) >= tasks_before + 5,
        timeout=15,
        what="the five duplicated tasks to run",
        process=stack.worker,
    )
    assert len(stack.mailbox.messages) == 1
    assert Delivery.objects.filter(events__id=event_id).count() == 1


def _processing_tasks_done(worker) -> int:
    """Processing tasks the worker has finished so far, read from its log (celery's INFO lines)."""
    return len(re.findall(r"Task events\.process_events\[[^\]]+\] succeeded", worker.output(tail=None)))
