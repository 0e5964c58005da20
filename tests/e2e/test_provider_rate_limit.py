"""End to end, on PostgreSQL: two worker processes (as on two machines) share one provider's rate
limit through Redis (messages.providers): 200 emails at 20 per second take at least 9 seconds from
the first to the last, and all of them arrive. A module of its own: no other stack's worker may
share the broker and the database meanwhile."""

from __future__ import annotations

import copy
import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from django.db import connection
from django.utils import timezone

from campaign import services
from events.models import Event
from messages.models import Delivery
from tests.conftest import CART_EVENT, CART_URL, SEED_BODY, publish_events
from tests.e2e.stack import (
    flush_broker,
    http,
    redis_url,
    stack_environment,
    start_beat,
    start_web,
    start_worker,
    wait_until,
)
from tests.factories import OrganizationFactory
from tests.smtp import SmtpServer

pytestmark = [pytest.mark.e2e]

RATE_LIMIT_DB = 8  # this test's own database of the test session's Redis server


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="several worker processes share PostgreSQL (row locks)"
)
@pytest.mark.django_db(transaction=True)
def test_200_emails_at_20_per_second_across_two_workers_take_at_least_9_seconds(tmp_path):
    organization = OrganizationFactory(slug="geometrixx")
    publish_events(organization, copy.deepcopy(CART_EVENT))
    issued = services.create_api_credential(organization=organization)
    limiter_url = redis_url().rsplit("/", 1)[0] + f"/{RATE_LIMIT_DB}"
    redis.Redis.from_url(limiter_url).flushdb()  # our own database of our own server
    with SmtpServer() as smtp:
        providers = [
            {"name": "limited", "options": {"host": "127.0.0.1", "port": smtp.port}, "rate_limit": 20},
        ]
        env = stack_environment(
            smtp_port=smtp.port,
            var_dir=tmp_path,
            EVENT_LEASE_SECONDS="60",
            EVENT_CLAIM_BATCH="10",
            EMAIL_TIMEOUT="5",
            EMAIL_PROVIDERS=json.dumps(providers),
            PROVIDERS_REDIS_URL=limiter_url,
        )
        flush_broker()
        processes = []
        try:
            web, base = start_web(env, tmp_path, "web")
            processes.append(web)
            workers = [
                start_worker(env, tmp_path, "worker-a", beat=False),
                start_worker(env, tmp_path, "worker-b", beat=False),
            ]
            processes += workers
            for worker in workers:
                wait_until(
                    lambda w=worker: " ready." in w.output(), timeout=60, what=worker.name, process=worker
                )
            processes.append(start_beat(env, tmp_path))
            status, answer = http(
                "POST",
                f"{base}/ims/token/v3",
                form={
                    "grant_type": "client_credentials",
                    "client_id": issued.credential.api_key,
                    "client_secret": issued.client_secret,
                },
            )
            assert status == 200
            headers = {
                "Authorization": f"Bearer {answer['access_token']}",
                "X-Api-Key": issued.credential.api_key,
            }
            expiration = (timezone.now() + dt.timedelta(days=1)).isoformat()

            def post(n: int) -> str:
                body = {
                    **copy.deepcopy(SEED_BODY),
                    "email": f"user{n}@example.com",
                    "scheduled": None,
                    "expiration": expiration,
                }
                code, reply = http("POST", f"{base}{CART_URL}", body=body, headers=headers)
                assert code == 201, reply
                return reply["PKey"]

            with ThreadPoolExecutor(max_workers=8) as pool:
                pkeys = list(pool.map(post, range(200)))
            received = smtp.mailbox.wait_for(200, timeout=120)
            assert len(received) == 200
            assert {r.recipients[0] for r in received} == {f"user{n}@example.com" for n in range(200)}
            times = sorted(r.received_at for r in received)
            # 20 in the first second, then 20 a second: the 200th no sooner than 9 s after the first.
            assert times[-1] - times[0] >= 9.0  # (without the limit: about 1.3 s here)
            # No burst: the 21st arrival after any arrival comes about a second later (the slots are
            # a second apart; less a margin for the sends' own times, which vary).
            assert min(times[i + 20] - times[i] for i in range(len(times) - 20)) > 0.5
            wait_until(
                lambda: Event.objects.filter(pkey__in=pkeys, status="processed").count() == 200,
                timeout=60,
                what="200 processed events",
                interval=0.5,
            )
            deliveries = Delivery.objects.filter(event_link__event__pkey__in=pkeys)
            assert set(deliveries.values_list("provider", flat=True)) == {"limited"}
            # Both workers sent some of them.
            for worker in workers:
                assert "-> processed" in worker.output(tail=None), worker.name
        finally:
            for process in processes:
                process.stop()
