"""End to end: push events through the real worker to FCM HTTP v1 (a fake OAuth token endpoint and
a fake FCM on loopback), the service account handed to the worker in its environment."""

from __future__ import annotations

import json

import pytest

from tests.conftest import publish_events
from tests.e2e.stack import stack_processes_for
from tests.e2e.test_event_flow import final_status, post_event
from tests.fcm import PROJECT, FakeGoogle, fcm_error

pytestmark = [pytest.mark.e2e]
SHIPPED = {
    "name": "shipped",
    "channel": "push",
    "fields": [{"name": "order", "type": "text"}],
    "message": {"title": "Shipped", "body": "Order {{ ctx.order }} is on its way"},
}
SHIPPED_URL = "/geometrixx/campaign/mcgeometrixx/EVTshipped"


@pytest.fixture(scope="module")
def google():
    fake = FakeGoogle()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def stack_processes(django_db_setup, django_db_blocker, smtp, google, tmp_path_factory):
    """The stack of conftest.py, its push channel on FCM's backend pointed at the fake."""
    log_dir = tmp_path_factory.mktemp("fcm")
    fcm = {
        "PUSH_BACKEND": "messages.channels.push.FcmPushBackend",
        "FCM_SERVICE_ACCOUNT_JSON": json.dumps(google.service_account),
        "FCM_BASE_URL": google.base_url,
    }
    yield from stack_processes_for(django_db_blocker, smtp_port=smtp.port, log_dir=log_dir, **fcm)


def test_the_worker_sends_a_push_to_fcm_and_ignores_a_dead_token_afterwards(stack, geometrixx, google):
    publish_events(geometrixx, dict(SHIPPED))
    headers = stack.token_headers(geometrixx)

    def shipped(token: str, order: str) -> str:
        body = {"pushPlatform": "fcm", "registrationToken": token, "ctx": {"order": order}}
        return post_event(stack, headers, body, url=SHIPPED_URL)

    sent = shipped("token-live-1", "A1")
    assert final_status(stack, headers, sent, url=SHIPPED_URL) == "processed"
    (send,) = google.wait_for_sends(1)
    assert send["path"] == f"/v1/projects/{PROJECT}/messages:send"
    assert send["authorization"] == "Bearer access-1" and len(google.assertions) == 1
    message = send["body"]["message"]
    assert message["token"] == "token-live-1"
    assert message["notification"] == {"title": "Shipped", "body": "Order A1 is on its way"}
    assert message["data"]["PKey"] == sent

    google.answers.append(fcm_error(404, "UNREGISTERED", "Requested entity was not found."))
    dead = shipped("token-gone-2", "B2")
    assert final_status(stack, headers, dead, url=SHIPPED_URL) == "deliveryFailed"
    again = shipped("token-gone-2", "B3")
    assert final_status(stack, headers, again, url=SHIPPED_URL) == "ignored"
    assert len(google.sends) == 2  # nothing went to the dead token the second time
