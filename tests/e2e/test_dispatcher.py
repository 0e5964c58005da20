"""The dispatcher in a real worker: an event that only lands in the table is sent; a dispatcher
killed is started again by its worker, and what came meanwhile is sent."""

from __future__ import annotations

import copy
import os
import re
import signal

import pytest
from django.db import connection
from django.utils import timezone

from events.models import Event
from tests.conftest import CART_EVENT, publish_events
from tests.e2e.stack import flush_broker, stack_environment, start_worker, wait_until
from tests.factories import OrganizationFactory
from tests.smtp import SmtpServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

STARTED = re.compile(r"events dispatcher started \(pid (\d+)\)")


def stored(configuration, email: str) -> Event:
    """An event as a POST leaves it: a row in the table, and nothing sent to the broker."""
    ctx = {"firstName": "Jack", "lastProduct": "Bag", "cartAmount": "$1"}
    return Event.objects.create(
        organization=configuration.organization,
        configuration=configuration,
        email=email,
        ctx=ctx,
        next_attempt_at=timezone.now(),
    )


def dispatcher_pids(worker) -> list[int]:
    return [int(pid) for pid in STARTED.findall(worker.output(tail=None))]


def test_the_table_is_the_queue_and_a_killed_dispatcher_comes_back(tmp_path):
    organization = OrganizationFactory(slug="geometrixx")
    [configuration] = publish_events(organization, copy.deepcopy(CART_EVENT))
    # On PostgreSQL nothing but the INSERT's notification wakes the dispatcher quickly enough: its
    # poll is a minute and no beat (no sweep) runs. SQLite has only the poll.
    poll = "60" if connection.vendor == "postgresql" else "0.2"
    with SmtpServer() as smtp:
        env = stack_environment(smtp_port=smtp.port, var_dir=tmp_path, DISPATCH_POLL_SECONDS=poll)
        flush_broker()
        worker = start_worker(env, tmp_path, name="dispatching", beat=False)
        try:
            wait_until(lambda: dispatcher_pids(worker), timeout=30, what="the dispatcher", process=worker)
            stored(configuration, "first@example.com")
            assert [m.recipients for m in smtp.mailbox.wait_for(1, timeout=20)] == [["first@example.com"]]

            [first_pid] = dispatcher_pids(worker)
            os.kill(first_pid, signal.SIGKILL)
            wait_until(
                lambda: len(dispatcher_pids(worker)) == 2, timeout=30, what="a new dispatcher", process=worker
            )
            assert "starting it again" in worker.output(tail=None)
            stored(configuration, "second@example.com")
            received = smtp.mailbox.wait_for(2, timeout=20)
            assert sorted(r for m in received for r in m.recipients) == [
                "first@example.com",
                "second@example.com",
            ]
            assert Event.objects.filter(status="processed").count() == 2

            # A worker killed outright: its dispatcher does not linger (it watches its parent).
            last_pid = dispatcher_pids(worker)[-1]
            os.kill(worker.popen.pid, signal.SIGKILL)
            wait_until(lambda: not running(last_pid), timeout=15, what="the orphaned dispatcher to exit")
        finally:
            worker.stop()


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False
