"""End to end: templates beyond the bounds of rendering and a task past its soft time limit, in a
real Celery worker (prefork, with billiard's time limits) fed over HTTP, sending over SMTP."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from django.utils import timezone

from events.models import Event
from messages.models import MessageVersion, TransactionalMessage
from tests.conftest import CART_EVENT, SEED_BODY, publish_events
from tests.e2e.stack import stack_processes_for
from tests.e2e.test_event_flow import final_status, post_event

pytestmark = [pytest.mark.e2e]
FUTURE = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.768Z")
CHAINED_REPLACE = '{{ "aaaaaaaaaa"' + '|replace("a","aaaaaaaaaa")' * 9 + " }}"
NESTED_LOOPS = '{% for a in "x"*100000 %}{% for b in "x"*100000 %}{% endfor %}{% endfor %}'
BOUNDS = {
    "RENDER_TIMEOUT_SECONDS": "0.5",
    "RENDER_MAX_LOOP_ITERATIONS": str(10**12),  # the nested loops meet the deadline
    "EVENT_TASK_SOFT_TIME_LIMIT_SECONDS": "1",
    "EVENT_TASK_TIME_LIMIT_SECONDS": "30",
    "EVENT_LEASE_SECONDS": "30",  # a slow send must not lose its lease to the sweep here
}


@pytest.fixture(scope="module")
def stack_processes(django_db_setup, django_db_blocker, smtp, tmp_path_factory):
    """The stack of conftest.py, with short bounds of rendering and a one-second soft time limit."""
    log_dir = tmp_path_factory.mktemp("bounded")
    yield from stack_processes_for(django_db_blocker, smtp_port=smtp.port, log_dir=log_dir, **BOUNDS)


def force_live_content(configuration, **parts) -> None:
    """A version made live around the form's and the publication's checks."""
    message = configuration.message
    content = {**message.live_version.content, **parts}
    version = MessageVersion.objects.create(
        message=message, number=message.live_version.number + 1, content=content
    )
    TransactionalMessage.objects.filter(pk=message.pk).update(live_version=version)


def test_templates_beyond_the_bounds_fail_their_events_and_the_worker_sends_the_next(stack, geometrixx):
    replacing, looping, normal = publish_events(
        geometrixx,
        *({**copy.deepcopy(CART_EVENT), "name": name} for name in ("replacing", "looping", "normal")),
    )
    force_live_content(replacing, subject=CHAINED_REPLACE)
    force_live_content(looping, html=NESTED_LOOPS)
    headers = stack.token_headers(geometrixx)
    body = {**copy.deepcopy(SEED_BODY), "expiration": FUTURE, "scheduled": None}
    pkeys = {
        name: post_event(stack, headers, body, url=f"/geometrixx/campaign/mcgeometrixx/EVT{name}")
        for name in ("replacing", "looping", "normal")
    }
    statuses = {
        name: final_status(stack, headers, pkey, url=f"/geometrixx/campaign/mcgeometrixx/EVT{name}")
        for name, pkey in pkeys.items()
    }
    assert statuses == {"replacing": "deliveryFailed", "looping": "deliveryFailed", "normal": "processed"}
    assert "(RENDER_MAX_OUTPUT_CHARS)" in Event.objects.get(pkey=pkeys["replacing"]).last_error
    assert Event.objects.get(pkey=pkeys["looping"]).last_error == (
        "the message could not be rendered: html: the template exceeded the render deadline of 0.5 s "
        "(RENDER_TIMEOUT_SECONDS)"
    )
    (received,) = stack.mailbox.wait_for(1)
    assert received.subject == "Jack, your cart is waiting"
    assert stack.worker.popen.poll() is None  # the worker lives on


def test_a_soft_time_limit_during_a_slow_send_records_it_once_and_the_worker_goes_on(stack, geometrixx):
    publish_events(geometrixx, copy.deepcopy(CART_EVENT))
    headers = stack.token_headers(geometrixx)
    stack.mailbox.slow_seconds = 3  # three times the soft time limit
    body = {**copy.deepcopy(SEED_BODY), "expiration": FUTURE, "scheduled": None}
    slow = post_event(stack, headers, {**body, "email": "slow@example.com"})
    assert final_status(stack, headers, slow) == "processed"
    event = Event.objects.get(pkey=slow)
    assert event.attempts == 1 and event.deliveries.get().outcome == "sent"
    after = post_event(stack, headers, {**body, "email": "after@example.com"})
    assert final_status(stack, headers, after) == "processed"
    assert sorted(r for m in stack.mailbox.wait_for(2) for r in m.recipients) == [
        "after@example.com",
        "slow@example.com",
    ]
    assert "ran out of time (EVENT_TASK_SOFT_TIME_LIMIT_SECONDS, 1 s)" in stack.worker.output(tail=None)
    assert stack.worker.popen.poll() is None
