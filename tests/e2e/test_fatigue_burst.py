"""End to end, on PostgreSQL: two worker processes (as on two machines) decide a burst of events
for one profile under its fatigue rule, taking turns on the profile's row lock (events.typology).
A module of its own: no other stack's worker may share the broker and the database meanwhile."""

from __future__ import annotations

import copy
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from events.models import Event, FatigueRule
from tests.conftest import publish_events
from tests.e2e.stack import cluster, http, token_headers, wait_until
from tests.e2e.test_typology import WELCOME, WELCOME_URL, stored_reason
from tests.factories import OrganizationFactory, ProfileFactory
from tests.smtp import SmtpServer

pytestmark = [pytest.mark.e2e]


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="several worker processes share PostgreSQL (row locks)"
)
@pytest.mark.django_db(transaction=True)
def test_a_burst_of_50_events_for_one_profile_with_a_cap_of_3_sends_exactly_3_with_two_workers(tmp_path):
    organization = OrganizationFactory(slug="geometrixx")
    publish_events(organization, copy.deepcopy(WELCOME))
    FatigueRule.objects.create(organization=organization, name="Three a day", max_messages=3, period_hours=24)
    ProfileFactory(organization=organization, email="jane@example.com")
    # Small claims, so that both workers take events of the burst.
    with (
        SmtpServer() as smtp,
        cluster(tmp_path, smtp_port=smtp.port, EVENT_LEASE_SECONDS="30", EVENT_CLAIM_BATCH="4") as machines,
    ):
        base, headers = machines.base, token_headers(machines.base, organization)

        def post(n: int) -> str:
            body = {"ctx": {"email": "jane@example.com", "plan": f"plan {n}"}}
            code, reply = http("POST", f"{base}{WELCOME_URL}", body=body, headers=headers)
            assert code == 201, reply
            return reply["PKey"]

        with ThreadPoolExecutor(max_workers=8) as pool:
            pkeys = list(pool.map(post, range(50)))
        wait_until(
            lambda: Event.objects.filter(pkey__in=pkeys, status__in=["processed", "ignored"]).count() == 50,
            timeout=120,
            what="50 decided events",
            interval=0.5,
        )
        events = Event.objects.filter(pkey__in=pkeys)
        assert events.filter(status="processed").count() == 3
        assert events.filter(status="ignored").count() == 47
        reasons = {stored_reason(e.pkey) for e in events.filter(status="ignored")}
        assert reasons == {"fatigue: Three a day"}
        # Every event decided means every send recorded: what reached the server is all there is.
        assert len(smtp.mailbox.messages) == 3
        # Both workers decided events of the burst.
        for worker in machines.workers:
            assert re.search(r"-> (processed|ignored)", worker.output(tail=None)), worker.name
