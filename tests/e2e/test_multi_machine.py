"""The production layout, on one machine: two web servers and two workers (as if on four machines)
sharing one database and one Redis, with a single beat for the sweep."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.utils import timezone

from campaign import services
from events.models import Event
from tests.conftest import CART_EVENT, CART_URL, SEED_BODY, publish_events
from tests.e2e.stack import (
    flush_broker,
    http,
    stack_environment,
    start_beat,
    start_web,
    start_worker,
    wait_until,
)
from tests.factories import OrganizationFactory
from tests.smtp import SmtpServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_two_web_servers_and_two_workers_share_the_work_and_send_each_email_once(tmp_path):
    organization = OrganizationFactory(slug="geometrixx")
    publish_events(organization, copy.deepcopy(CART_EVENT))
    issued = services.create_api_credential(organization=organization)
    with SmtpServer() as smtp:
        # The events a machine's dispatcher hands to its own tasks stay with them however slowly a
        # loaded machine starts them (by default, after EVENT_BACKLOG_TAKEOVER_SECONDS another
        # machine's running task takes them: tests/events/test_claims.py): both machines take part.
        env = stack_environment(
            smtp_port=smtp.port,
            var_dir=tmp_path,
            EVENT_LEASE_SECONDS="30",
            EVENT_BACKLOG_TAKEOVER_SECONDS="60",
        )
        flush_broker()
        processes = []
        try:
            web_a, base_a = start_web(env, tmp_path, "web-a")
            processes.append(web_a)
            web_b, base_b = start_web(env, tmp_path, "web-b")
            processes.append(web_b)
            processes += [
                start_worker(env, tmp_path, "worker-a", beat=False),
                start_worker(env, tmp_path, "worker-b", beat=False),
                start_beat(env, tmp_path),
            ]
            # A token from one web server works on the other: the state is in the shared database.
            status, answer = http(
                "POST",
                f"{base_a}/ims/token/v3",
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
            logs = {p.name: p.output(tail=None) for p in processes}
            assert "-> processed" in logs["worker-a"] and "-> processed" in logs["worker-b"]
            # Any web server answers for any event.
            code, state = http("GET", f"{base_b}{CART_URL}/{pkeys[0]}", headers=headers)
            assert code == 200 and state["status"] == "processed"
        finally:
            for process in processes:
                process.stop()
