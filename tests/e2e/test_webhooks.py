"""End to end: status webhooks sent by the real worker (Celery on Redis, its beat) to a receiver
on loopback that verifies each signature with its own code (tests.webhook_receiver, from the
Standard Webhooks specification): every final status arrives; a worker SIGKILLed after recording a
status, or in the middle of a send, loses no notification (a repeat carries the same id); a
receiver down for a while gets its notifications on the shortened retry schedule."""

from __future__ import annotations

import copy
import datetime as dt
from collections import Counter

import pytest
from cryptography.fernet import Fernet
from django.utils import timezone

from campaign import services
from campaign.models import Quarantine
from events import webhooks
from events.models import Event, WebhookAttempt, WebhookEndpoint, WebhookNotification
from tests.conftest import CART_EVENT, CART_URL, SEED_BODY, publish_events
from tests.e2e.stack import flush_broker, http, stack_environment, start_web, start_worker, wait_until
from tests.factories import OrganizationFactory
from tests.smtp import SmtpServer, free_port
from tests.webhook_receiver import Receiver, verify

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
FUTURE = (timezone.now() + dt.timedelta(days=30)).isoformat()
KEY = Fernet.generate_key().decode()
WEBHOOK_ENV = {
    "ENCRYPTION_KEYS": KEY,  # the test process encrypts the secret, the worker decrypts it
    "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",  # the receiver is on loopback
    "WEBHOOK_INTERVAL_SECONDS": "0.3",
    "WEBHOOK_LEASE_SECONDS": "3",
    "WEBHOOK_RETRY_FIRST_SECONDS": "0.5",
    "WEBHOOK_RETRY_WINDOW_SECONDS": "120",
}


@pytest.fixture
def organization(settings):
    settings.ENCRYPTION_KEYS = [KEY]
    organization = OrganizationFactory(slug="geometrixx")
    publish_events(organization, copy.deepcopy(CART_EVENT))
    return organization


def headers_for(organization) -> dict[str, str]:
    issued = services.create_api_credential(organization=organization)
    token = services.issue_access_token(api_key=issued.credential.api_key, client_secret=issued.client_secret)
    return {"Authorization": f"Bearer {token.access_token}", "X-Api-Key": issued.credential.api_key}


def endpoint_for(organization, url: str, **flags) -> str:
    endpoint = WebhookEndpoint(organization=organization, url=url, **flags)
    return webhooks.create_endpoint(endpoint=endpoint)


def post(base: str, headers: dict[str, str], **body) -> str:
    status, answer = http(
        "POST",
        f"{base}{CART_URL}",
        body={**copy.deepcopy(SEED_BODY), "scheduled": None, **body},
        headers=headers,
    )
    assert status == 201, answer
    return answer["PKey"]


def test_the_receiver_gets_each_final_status_signed(organization, tmp_path):
    Quarantine.objects.create(organization=organization, channel="email", address="blocked@example.com")
    with SmtpServer() as smtp, Receiver() as receiver:
        secret = endpoint_for(organization, receiver.url, bounces=True)
        env = stack_environment(smtp_port=smtp.port, var_dir=tmp_path, **WEBHOOK_ENV)
        flush_broker()
        web, base = start_web(env, tmp_path)
        worker = start_worker(env, tmp_path)
        try:
            headers = headers_for(organization)
            expected = {
                post(base, headers, email="ok@example.com", expiration=FUTURE): "processed",
                post(base, headers, email="blocked@example.com", expiration=FUTURE): "ignored",
                post(base, headers, email="reject@example.com", expiration=FUTURE): "deliveryFailed",
                post(base, headers, email="old@example.com"): "tooOld",  # the seed's expiration: 2017
            }

            def statuses(got):
                return [r for r in got if r.payload["type"] == "event.status"]

            got = receiver.wait_for(lambda got: len(statuses(got)) == 4 and len(got) == 5, timeout=60)
        finally:
            worker.stop()
            web.stop()
    assert all(verify(secret=secret, headers=r.headers, body=r.body) for r in got)
    told = {r.payload["data"]["PKey"]: r.payload["data"]["status"] for r in statuses(got)}
    assert told == expected
    for pkey, status in told.items():  # what the API answers too
        assert Event.objects.get(pkey=pkey).status == status
    [bounce] = [r for r in got if r.payload["type"] == "message.bounced"]
    assert bounce.payload["data"]["PKey"] == next(p for p, s in expected.items() if s == "deliveryFailed")
    assert len({r.webhook_id for r in got}) == 5


def test_a_worker_killed_after_the_status_or_mid_send_loses_no_notification(organization, tmp_path):
    """First a worker without its beat records the status and dies (SIGKILL): nothing was stored
    by it, yet the next worker's scanner stores the notification from the events table. That worker
    dies in the middle of the POST (the receiver holds its answer): the third sends the same
    notification again, with the same webhook-id."""
    with SmtpServer() as smtp, Receiver() as receiver:
        secret = endpoint_for(organization, receiver.url)
        env = stack_environment(smtp_port=smtp.port, var_dir=tmp_path, **WEBHOOK_ENV)
        flush_broker()
        web, base = start_web(env, tmp_path)
        workers = [start_worker(env, tmp_path, name="recorder", beat=False)]
        try:
            pkey = post(base, headers_for(organization), email="ok@example.com", expiration=FUTURE)
            wait_until(
                lambda: Event.objects.get(pkey=pkey).status == "processed",
                timeout=30,
                what="the event processed",
                process=workers[0],
            )
            workers[0].kill()
            assert not WebhookNotification.objects.exists()  # the worker never stored anything

            receiver.released.clear()  # the next POST stays in flight
            workers.append(start_worker(env, tmp_path, name="doomed"))
            [first] = receiver.wait_for(lambda got: len(got) == 1, timeout=60)
            workers[1].kill()  # between the send and its record
            stored = WebhookNotification.objects.get()
            assert stored.state == "pending" and not stored.tries.exists()
            receiver.released.set()

            workers.append(start_worker(env, tmp_path, name="rescuer"))
            got = receiver.wait_for(lambda got: len(got) == 2, timeout=60)
            wait_until(
                lambda: WebhookNotification.objects.get().state == "delivered",
                timeout=30,
                what="the notification recorded as delivered",
                process=workers[2],
            )
        finally:
            for worker in workers:
                worker.stop()
            web.stop()
    assert [r.webhook_id for r in got] == [stored.webhook_id] * 2  # the same id: the receiver deduplicates
    assert got[0].body == got[1].body and first.payload["data"]["PKey"] == pkey
    assert all(verify(secret=secret, headers=r.headers, body=r.body) for r in got)


def test_a_receiver_down_for_a_while_is_retried_on_the_shortened_schedule(organization, tmp_path):
    port = free_port()
    with SmtpServer() as smtp:
        secret = endpoint_for(organization, f"http://127.0.0.1:{port}/hooks")
        env = stack_environment(smtp_port=smtp.port, var_dir=tmp_path, **WEBHOOK_ENV)
        flush_broker()
        web, base = start_web(env, tmp_path)
        worker = start_worker(env, tmp_path)
        try:
            pkey = post(base, headers_for(organization), email="ok@example.com", expiration=FUTURE)
            wait_until(  # the receiver is down: refused connections, retried later and later
                lambda: WebhookAttempt.objects.count() >= 3,
                timeout=60,
                what="three failed attempts",
                process=worker,
                interval=0.2,
            )
            with Receiver(port=port) as receiver:  # back up
                [got] = receiver.wait_for(lambda got: len(got) == 1, timeout=60)
                wait_until(
                    lambda: WebhookNotification.objects.get().state == "delivered",
                    timeout=30,
                    what="the notification recorded as delivered",
                    process=worker,
                )
        finally:
            worker.stop()
            web.stop()
    notification = WebhookNotification.objects.get()
    attempts = list(WebhookAttempt.objects.order_by("started_at", "id"))
    assert [a.status_code for a in attempts[:-1]] == [None] * (len(attempts) - 1) and attempts[
        -1
    ].status_code == 204
    assert all(a.error for a in attempts[:-1])
    gaps = [
        (b.started_at - a.started_at).total_seconds() for a, b in zip(attempts, attempts[1:], strict=False)
    ]
    schedule = webhooks.retry_delays(first=0.5, window=120)  # the stack's settings
    assert all(gap >= delay for gap, delay in zip(gaps, schedule, strict=False))  # never sooner
    assert notification.attempts == len(attempts) and Counter(a.notification_id for a in attempts) == {
        notification.pk: len(attempts)
    }
    assert got.webhook_id == notification.webhook_id and got.payload["data"]["PKey"] == pkey
    assert verify(secret=secret, headers=got.headers, body=got.body)
