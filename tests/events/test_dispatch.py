"""The web process's background enqueuer: POSTs never wait for the broker, and nothing is lost."""

from __future__ import annotations

import time

import pytest

from events import services, tasks
from events.dispatch import BackgroundEnqueuer
from events.models import Event
from tests.events.test_pipeline import accept, live_body

pytestmark = pytest.mark.django_db


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_submitted_ids_reach_the_broker_from_the_background_in_batches(monkeypatch, settings):
    settings.EVENT_CLAIM_BATCH = 3
    published: list[list[int]] = []
    monkeypatch.setattr(services, "enqueue_events", lambda ids: published.append(list(ids)))
    enqueuer = BackgroundEnqueuer()
    enqueuer.submit(list(range(1, 8)))
    wait_for(lambda: sum(len(batch) for batch in published) == 7)
    assert sorted(i for batch in published for i in batch) == list(range(1, 8))
    assert all(1 <= len(batch) <= 3 for batch in published)


def test_flush_publishes_what_is_still_queued_at_once(monkeypatch):
    published: list[int] = []
    monkeypatch.setattr(services, "enqueue_events", lambda ids: published.extend(ids))
    enqueuer = BackgroundEnqueuer()
    enqueuer._ensure_running = lambda: None  # no thread: only flush() can publish
    enqueuer.submit([4, 5])
    assert published == []
    enqueuer.flush()
    assert published == [4, 5]


def test_an_accepted_event_goes_to_the_background_enqueuer_after_commit(
    cart_configuration, settings, monkeypatch, django_capture_on_commit_callbacks
):
    from events import dispatch

    settings.EVENT_ENQUEUE_IN_BACKGROUND = True
    submitted: list[int] = []
    monkeypatch.setattr(dispatch.background_enqueuer, "submit", lambda ids: submitted.extend(ids))
    with django_capture_on_commit_callbacks(execute=True):
        event = accept(cart_configuration, live_body())
        assert submitted == []
    assert submitted == [event.pk]


def test_enqueue_sends_one_task_per_batch_and_a_broken_broker_leaves_the_rest_to_the_sweep(
    cart_configuration, settings, monkeypatch
):
    settings.EVENT_CLAIM_BATCH = 2
    events = [accept(cart_configuration, live_body(email=f"e{n}@example.com")) for n in range(5)]
    ids = [event.pk for event in events]
    sent: list[list[int]] = []

    def flaky(args, **kwargs):
        if len(sent) == 1:
            sent.append([])
            raise ConnectionError("broker down")
        sent.append(args[0])

    monkeypatch.setattr(tasks.process_events, "apply_async", flaky)
    services.enqueue_events(ids)
    assert sent == [ids[0:2], [], ids[4:5]]
    cleared = set(Event.objects.filter(enqueued_at__isnull=True).values_list("pk", flat=True))
    assert cleared == set(ids[2:4])  # the failed chunk waits for the sweep
