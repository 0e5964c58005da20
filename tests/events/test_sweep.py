"""The sweep: a dead worker's events taken back, expired ones expired, lost enqueues sent again."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from events import claims, pipeline, sweep
from events.models import Event
from tests.events.test_pipeline import accept, live_body

pytestmark = pytest.mark.django_db


def test_sweep_reclaims_an_event_whose_worker_died(cart_configuration):
    event = accept(cart_configuration, live_body())
    lease = claims.claim(event.pk, now=timezone.now())
    assert lease is not None  # a worker took it, then died
    assert sweep.recover()["reclaimed"] == 0  # the lease still runs
    Event.objects.filter(pk=event.pk).update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))
    result = sweep.recover()
    assert result["reclaimed"] == 1 and result["enqueued"] == 1
    assert pipeline.process(event.pk) == "processed"
    # The dead worker, coming back, cannot record anything over the new outcome.
    from events.transitions import transition_recording

    stale = dict(to="deliveryFailed", source="processing", lease=lease)
    assert not transition_recording(event.pk, **stale)
    assert Event.objects.get(pk=event.pk).status == "processed"


def test_sweep_expires_waiting_events_and_re_enqueues_lost_ones(cart_configuration, settings):
    lost = accept(cart_configuration, live_body())
    expired = accept(cart_configuration, live_body())
    Event.objects.filter(pk=expired.pk).update(expiration_at=timezone.now() - dt.timedelta(seconds=1))
    # The lost one was just handed to the broker (as the dispatcher does): not yet considered lost.
    Event.objects.filter(pk=lost.pk).update(enqueued_at=timezone.now())
    assert sweep.recover() == {"reclaimed": 0, "expired": 1, "enqueued": 0}
    assert Event.objects.get(pk=expired.pk).status == "tooOld"
    Event.objects.filter(pk=lost.pk).update(enqueued_at=timezone.now() - dt.timedelta(minutes=5))
    assert sweep.recover() == {"reclaimed": 0, "expired": 0, "enqueued": 1}


def test_a_broker_failure_loses_nothing(cart_configuration, monkeypatch):
    from events import services, tasks

    def broken(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.process_events, "apply_async", broken)
    event = accept(cart_configuration, live_body())
    services.enqueue_events([event.pk])
    event.refresh_from_db()
    assert event.status == "pending" and event.enqueued_at is None
    monkeypatch.undo()
    sent = []
    monkeypatch.setattr("events.services.enqueue_events", lambda ids: sent.extend(ids))
    assert sweep.recover()["enqueued"] == 1


@pytest.mark.parametrize("backlog", [3, 30])
def test_the_sweep_costs_the_same_few_queries_for_3_or_30_events(cart_configuration, monkeypatch, backlog):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    monkeypatch.setattr("events.services.enqueue_events", lambda ids: None)
    for n in range(backlog):
        accept(cart_configuration, live_body(email=f"s{n}@example.com"))
    Event.objects.update(enqueued_at=None)  # lost enqueues
    with CaptureQueriesContext(connection) as queries:
        assert sweep.recover()["enqueued"] == backlog
    assert len(queries.captured_queries) <= 12
