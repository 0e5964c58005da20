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

from events.models import Event
from messages.models import Delivery
from tests.conftest import CART_EVENT, CART_URL, SEED_BODY, publish_events
from tests.e2e.stack import cluster, http, redis_url, token_headers, wait_until
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
    limiter_url = redis_url().rsplit("/", 1)[0] + f"/{RATE_LIMIT_DB}"
    redis.Redis.from_url(limiter_url).flushdb()  # our own database of our own server
    with SmtpServer() as smtp:
        providers = [
            {"name": "limited", "options": {"host": "127.0.0.1", "port": smtp.port}, "rate_limit": 20},
        ]
        with cluster(
            tmp_path,
            smtp_port=smtp.port,
            EVENT_LEASE_SECONDS="60",
            EVENT_CLAIM_BATCH="10",
            EMAIL_TIMEOUT="5",
            EMAIL_PROVIDERS=json.dumps(providers),
            PROVIDERS_REDIS_URL=limiter_url,
        ) as machines:
            base, headers = machines.base, token_headers(machines.base, organization)
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
            for worker in machines.workers:
                assert "-> processed" in worker.output(tail=None), worker.name
