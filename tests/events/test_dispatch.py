"""The dispatcher: due events in the table handed to the workers, each once; woken by PostgreSQL's
NOTIFY, and polling for what no notification announces."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from django.db import connection
from django.utils import timezone

from events import dispatch, tasks
from events.models import Event
from tests.events.test_pipeline import accept, live_body

pytestmark = pytest.mark.django_db

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="LISTEN/NOTIFY is PostgreSQL's (SQLite polls)"
)


@pytest.fixture
def broker(monkeypatch) -> list[list[int]]:
    """The tasks sent, each a list of event ids, in order."""
    sent: list[list[int]] = []
    monkeypatch.setattr(tasks.process_events, "apply_async", lambda args, queue: sent.append(args[0]))
    return sent


def undispatched(configuration, count: int) -> list[Event]:
    events = [accept(configuration, live_body(email=f"d{n}@example.com")) for n in range(count)]
    Event.objects.filter(pk__in=[e.pk for e in events]).update(enqueued_at=None)
    return events


def test_due_events_are_handed_out_once_in_tasks_of_a_batch(
    cart_configuration, broker, settings, django_capture_on_commit_callbacks
):
    settings.EVENT_CLAIM_BATCH = 2
    due = undispatched(cart_configuration, 3)
    later = accept(cart_configuration, live_body(email="later@example.com"))
    Event.objects.filter(pk=later.pk).update(
        enqueued_at=None, next_attempt_at=timezone.now() + dt.timedelta(hours=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        handed = dispatch.dispatch_due()
    assert sorted(handed) == sorted(e.pk for e in due)
    assert sorted(sum(broker, [])) == sorted(e.pk for e in due)
    assert sorted(len(task) for task in broker) == [1, 2]
    assert Event.objects.filter(pk__in=handed, enqueued_at__isnull=True).count() == 0
    # A second dispatcher (or the next wake-up) finds nothing more to hand out.
    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch.dispatch_due() == []
    assert len(broker) == 2


def test_a_task_sent_long_ago_that_never_ran_is_the_sweeps(
    cart_configuration, broker, django_capture_on_commit_callbacks
):
    [event] = undispatched(cart_configuration, 1)
    Event.objects.filter(pk=event.pk).update(enqueued_at=timezone.now() - dt.timedelta(minutes=5))
    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch.dispatch_due() == []  # the dispatcher: carried by a task
        assert dispatch.dispatch_due(include_stale=True) == [event.pk]  # the sweep: that task was lost
    assert broker == [[event.pk]]


def test_a_broker_that_refuses_the_tasks_leaves_the_events_to_the_next_look(
    cart_configuration, monkeypatch, django_capture_on_commit_callbacks
):
    def refused(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.process_events, "apply_async", refused)
    [event] = undispatched(cart_configuration, 1)
    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch.dispatch_due() == [event.pk]
    assert Event.objects.get(pk=event.pk).enqueued_at is None
    sent: list[list[int]] = []
    monkeypatch.setattr(tasks.process_events, "apply_async", lambda args, queue: sent.append(args[0]))
    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch.dispatch_due() == [event.pk]
    assert sent == [[event.pk]]


def test_a_backlog_is_handed_out_at_one_look(
    cart_configuration, broker, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.DISPATCH_BATCH_LIMIT = 2
    monkeypatch.setattr("events.services.enqueue_events", lambda ids: broker.append(ids))
    due = undispatched(cart_configuration, 5)
    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch.dispatch_all() == 5
    assert sorted(sum(broker, [])) == sorted(e.pk for e in due)


def test_the_loop_hands_out_what_came_due_without_a_notification(
    cart_configuration, monkeypatch, settings, django_capture_on_commit_callbacks
):
    """A lost notification, a scheduled event or a retry: the poll finds them."""
    settings.DISPATCH_IDLE_AFTER_SECONDS = 0.05
    handed: list[int] = []
    monkeypatch.setattr("events.services.enqueue_events", lambda ids: handed.extend(ids))
    [event] = undispatched(cart_configuration, 1)
    Event.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now() + dt.timedelta(hours=1))
    looks = 0

    def wait(self, timeout):
        nonlocal looks
        looks += 1
        if looks == 1:  # while the dispatcher waits, the event comes due and no one says so
            Event.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())
        time.sleep(timeout)  # no notification comes: the wait lasts until the poll
        return False

    monkeypatch.setattr(dispatch.Listener, "wait", wait)
    monkeypatch.setattr(dispatch.connection, "close", lambda: None)  # the test's transaction stays
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.run(should_stop=lambda: looks >= 2, poll=0.01)
    assert handed == [event.pk]


def test_the_loop_goes_on_after_an_error(cart_configuration, monkeypatch):
    calls: list[str] = []

    def flaky():
        calls.append("look")
        if len(calls) == 1:
            raise RuntimeError("the database restarted")
        return 0

    monkeypatch.setattr(dispatch, "dispatch_all", flaky)
    monkeypatch.setattr(dispatch.Listener, "wait", lambda self, timeout: False)
    monkeypatch.setattr(dispatch.connection, "close", lambda: None)
    monkeypatch.setattr(dispatch.time, "sleep", lambda seconds: None)
    dispatch.run(should_stop=lambda: len(calls) >= 2, poll=0.01)
    assert calls == ["look", "look"]


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_an_insert_wakes_a_sleeping_dispatcher_once_it_commits(cart_configuration):
    listener = dispatch.Listener()
    try:
        assert listener.wait(0) is True  # the first call connects and LISTENs: look at once
        dispatch.say_asleep(until=timezone.now() + dt.timedelta(minutes=1))
        assert listener.wait(0.05) is False  # nothing inserted: the poll's timeout
        accept(cart_configuration, live_body())  # committed (autocommit): the trigger NOTIFYs
        # A notification that came while the dispatcher was busy waits in the connection: the
        # wake-up is not missed. (A broken trigger fails here only after the 30 s timeout.)
        assert listener.wait(30) is True
    finally:
        listener.close()


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_inserts_do_not_notify_while_the_dispatchers_are_awake(cart_configuration):
    """A NOTIFY serialises commits: the POSTs pay for it only when a dispatcher sleeps."""
    listener = dispatch.Listener()
    try:
        listener.wait(0)
        for awake in (None, timezone.now() - dt.timedelta(seconds=1)):  # awake; a dead one's lapsed date
            dispatch.say_asleep(until=awake)
            accept(cart_configuration, live_body())
            # The same INSERT notifies at once when a dispatcher sleeps (the test above), so a
            # notification, had one been sent, would be here well within this wait.
            assert listener.wait(0.5) is False
    finally:
        listener.close()


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_an_idle_dispatcher_says_it_sleeps_and_wakes_on_the_next_insert(
    cart_configuration, settings, monkeypatch
):
    from events.models import DispatcherSleep

    settings.DISPATCH_IDLE_AFTER_SECONDS = 0
    handed: list[int] = []
    monkeypatch.setattr("events.services.enqueue_events", lambda ids: handed.extend(ids))
    inserted: list[int] = []
    states: list[bool] = []

    def should_stop() -> bool:
        row = DispatcherSleep.objects.filter(pk=1).first()
        states.append(bool(row and row.asleep_until and row.asleep_until > timezone.now()))
        if states[-1] and not inserted:  # asleep: an event arrives
            inserted.append(accept(cart_configuration, live_body()).pk)
        return bool(handed)

    dispatch.run(should_stop=should_stop, poll=30)  # only the NOTIFY can wake it before 30 s
    assert handed == inserted
    assert True in states
    # Woken by the NOTIFY, not by the poll: asleep, the loop asks should_stop once a second.
    assert len(states) <= 5


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_wake_notifies_the_listeners(cart_configuration):
    listener = dispatch.Listener()
    try:
        listener.wait(0)
        woken = threading.Event()

        def listen():
            if listener.wait(30):
                woken.set()

        thread = threading.Thread(target=listen)
        thread.start()
        dispatch.wake()
        thread.join(35)
        assert woken.is_set()
    finally:
        listener.close()
