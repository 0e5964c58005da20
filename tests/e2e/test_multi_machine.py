"""The production layout, on one machine: two web servers and two workers (as if on four machines)
sharing one database and one Redis, with a single beat for the sweep."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.utils import timezone

from events.models import Event
from tests.conftest import CART_EVENT, CART_URL, SEED_BODY, publish_events
from tests.e2e.stack import cluster, http, token_headers, wait_until
from tests.factories import OrganizationFactory
from tests.smtp import SmtpServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_two_web_servers_and_two_workers_share_the_work_and_send_each_email_once(tmp_path):
    organization = OrganizationFactory(slug="geometrixx")
    publish_events(organization, copy.deepcopy(CART_EVENT))
    with SmtpServer() as smtp:
        # The events a machine's dispatcher hands to its own tasks stay with them however slowly a
        # loaded machine starts them (by default, after EVENT_BACKLOG_TAKEOVER_SECONDS another
        # machine's running task takes them: tests/events/test_claims.py): both machines take part.
        with cluster(
            tmp_path,
            smtp_port=smtp.port,
            webs=("web-a", "web-b"),
            EVENT_LEASE_SECONDS="30",
            EVENT_BACKLOG_TAKEOVER_SECONDS="60",
        ) as machines:
            # A token from one web server works on the other: the state is in the shared database.
            base_a, base_b = machines.bases
            headers = token_headers(base_a, organization)
            expiration = (timezone.now() + dt.timedelta(days=1)).isoformat()
            bases = itertools.cycle([base_a, base_b])
            jobs = [
                (
                    next(bases),
                    {
                        **copy.deepcopy(SEED_BODY),
                        "scheduled": None,
                        "expiration": expiration,
                        "email": f"buyer{i}@example.com",
                    },
                )
                for i in range(120)
            ]

            def post(job):
                base, body = job
                code, reply = http("POST", f"{base}{CART_URL}", body=body, headers=headers)
                assert code == 201, reply
                return reply["PKey"]

            with ThreadPoolExecutor(max_workers=8) as pool:
                pkeys = list(pool.map(post, jobs))
            wait_until(
                lambda: Event.objects.filter(status="processed").count() == 120,
                timeout=90,
                what="120 processed events",
                interval=0.5,
            )
            received = smtp.mailbox.wait_for(120, timeout=10)
            recipients = [r for message in received for r in message.recipients]
            assert sorted(recipients) == sorted(f"buyer{i}@example.com" for i in range(120))
            # Both workers took part.
            logs = machines.logs()
            assert "-> processed" in logs["worker-a"] and "-> processed" in logs["worker-b"]
            # Any web server answers for any event.
            code, state = http("GET", f"{base_b}{CART_URL}/{pkeys[0]}", headers=headers)
            assert code == 200 and state["status"] == "processed"
