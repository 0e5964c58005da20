"""A worker killed with SIGKILL in the middle of a send, or of a burst: the events are recovered after
their leases, and only the sends in flight at the kill go out twice."""

from __future__ import annotations

import copy
import datetime as dt
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.utils import timezone

from events.models import Event
from tests.conftest import CART_EVENT, CART_URL, SEED_BODY, publish_events
from tests.e2e.stack import flush_broker, http, stack_environment, start_web, start_worker, wait_until
from tests.factories import OrganizationFactory
from tests.smtp import SmtpServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_killing_the_worker_mid_send_loses_nothing_and_sends_once(tmp_path):
    organization = OrganizationFactory(slug="geometrixx")
    publish_events(organization, copy.deepcopy(CART_EVENT))
    from campaign import services

    issued = services.create_api_credential(organization=organization)
    token = services.issue_access_token(api_key=issued.credential.api_key, client_secret=issued.client_secret)
    headers = {"Authorization": f"Bearer {token.access_token}", "X-Api-Key": issued.credential.api_key}
    with SmtpServer() as smtp:
        smtp.mailbox.slow_seconds = 8
        env = stack_environment(smtp_port=smtp.port, var_dir=tmp_path)
        flush_broker()
        web, base = start_web(env, tmp_path)
        first = start_worker(env, tmp_path, name="doomed")
        second = None
        try:
            future = (timezone.now() + dt.timedelta(days=1)).isoformat()
            body = {
                **copy.deepcopy(SEED_BODY),
                "email": "slow@example.com",
                "scheduled": None,
                "expiration": future,
            }
            status, answer = http("POST", f"{base}{CART_URL}", body=body, headers=headers)
            assert status == 201
            event = Event.objects.get(pkey=answer["PKey"])
            wait_until(
                lambda: Event.objects.get(pk=event.pk).status == "processing",
                timeout=30,
                what="the worker to claim the event",
                process=first,
            )
            first.kill()  # in the middle of the SMTP conversation
            assert Event.objects.get(pk=event.pk).status == "processing"
            assert smtp.mailbox.messages == []
            second = start_worker(env, tmp_path, name="rescuer")
            wait_until(
                lambda: Event.objects.get(pk=event.pk).status == "processed",
                timeout=40,
                what="the event to be recovered and processed",
                process=second,
                interval=0.2,
            )
            reasons = [c.reason for c in Event.objects.get(pk=event.pk).status_changes.all()]
            assert any("lease expired" in reason for reason in reasons)
            # Its timeline tells the crash: the first worker's attempt ended by the sweep, the
            # second worker's sent it.
            status, told = http("GET", f"{base}{CART_URL}/{answer['PKey']}/timeline", headers=headers)
            assert status == 200
            moves = [(s["to"], s["code"]) for s in told["steps"] if s["step"] == "statusChanged"]
            # (On a loaded machine the second worker's slow send may outlast a lease too: then one
            # more claim and expiry come between, and the story says so.)
            assert moves[:2] == [("processing", "claimed"), ("pending", "leaseExpired")]
            assert moves[-2:] == [("processing", "claimed"), ("processed", "sent")]
            assert set(moves[2:-2]) <= {("processing", "claimed"), ("pending", "leaseExpired")}
            attempts = [s for s in told["steps"] if s["step"] == "attempt"]
            assert attempts[0]["code"] == "leaseExpired" and attempts[-1]["code"] == "sent"
            assert attempts[0]["worker"] != attempts[-1]["worker"]
            assert len(smtp.mailbox.wait_for(1)) == 1
            assert [m.recipients for m in smtp.mailbox.messages] == [["slow@example.com"]]
        finally:
            if second:
                second.stop()
            first.stop()
            web.stop()


def test_a_worker_killed_during_a_burst_sends_again_at_most_its_sends_in_flight(tmp_path):
    """SIGKILL while a burst is being sent, then a second worker takes the events over: every email
    goes out, and at most EVENT_SENDS_IN_FLIGHT per process of the killed worker go out twice (the
    sends in flight, from the start of a conversation to the commit of its record), although it
    held many more events (its claims) when it died."""
    in_flight, processes, burst = 4, 2, 80
    organization = OrganizationFactory(slug="geometrixx")
    publish_events(organization, copy.deepcopy(CART_EVENT))
    from campaign import services

    issued = services.create_api_credential(organization=organization)
    token = services.issue_access_token(api_key=issued.credential.api_key, client_secret=issued.client_secret)
    headers = {"Authorization": f"Bearer {token.access_token}", "X-Api-Key": issued.credential.api_key}
    future = (timezone.now() + dt.timedelta(days=1)).isoformat()
    with SmtpServer() as smtp:
        smtp.mailbox.data_seconds = 0.05  # each answer a little late: sends are in flight at any instant
        env = stack_environment(smtp_port=smtp.port, var_dir=tmp_path, EVENT_SENDS_IN_FLIGHT=str(in_flight))
        flush_broker()
        web, base = start_web(env, tmp_path)
        first = start_worker(env, tmp_path, name="doomed")  # -c 2: two processes
        second = None
        try:
            bodies = [
                {
                    **copy.deepcopy(SEED_BODY),
                    "email": f"b{n}@example.com",
                    "scheduled": None,
                    "expiration": future,
                }
                for n in range(burst)
            ]
            with ThreadPoolExecutor(max_workers=8) as pool:
                statuses = list(
                    pool.map(lambda b: http("POST", f"{base}{CART_URL}", body=b, headers=headers)[0], bodies)
                )
            assert statuses == [201] * burst
            wait_until(
                lambda: len(smtp.mailbox.messages) >= burst // 4,
                timeout=60,
                what="a quarter sent",
                process=first,
            )
            first.kill()
            held = Event.objects.filter(status="processing").count()
            sent_before = len(smtp.mailbox.messages)
            assert (
                sent_before < burst and held > processes * in_flight
            )  # it died holding more than it may resend
            second = start_worker(env, tmp_path, name="rescuer")
            wait_until(
                lambda: Event.objects.filter(status="processed").count() == burst,
                timeout=90,
                what="every event processed after the takeover",
                process=second,
                interval=0.5,
            )
            recipients = Counter(r for m in smtp.mailbox.messages for r in m.recipients)
            assert set(recipients) == {body["email"] for body in bodies}  # nothing lost
            twice = sum(count - 1 for count in recipients.values())
            assert twice <= processes * in_flight, recipients
            assert all(e.deliveries.filter(outcome="sent").count() == 1 for e in Event.objects.all())
        finally:
            if second:
                second.stop()
            first.stop()
            web.stop()
