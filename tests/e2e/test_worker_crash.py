"""A worker killed with SIGKILL in the middle of a send: the event is recovered after its lease."""

from __future__ import annotations

import copy
import datetime as dt

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
            assert len(smtp.mailbox.wait_for(1)) == 1
            assert [m.recipients for m in smtp.mailbox.messages] == [["slow@example.com"]]
        finally:
            if second:
                second.stop()
            first.stop()
            web.stop()
