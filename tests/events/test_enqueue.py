"""Handing events to the broker: one task per batch, and a broken broker loses nothing."""

from __future__ import annotations

import pytest
from django.utils import timezone

from events import services, tasks
from events.models import Event
from tests.events.test_pipeline import accept, live_body

pytestmark = pytest.mark.django_db


def test_enqueue_sends_one_task_per_batch_and_a_broken_broker_leaves_the_rest_to_the_sweep(
    cart_configuration, settings, monkeypatch
):
    settings.EVENT_CLAIM_BATCH = 2
    events = [accept(cart_configuration, live_body(email=f"e{n}@example.com")) for n in range(5)]
    ids = [event.pk for event in events]
    Event.objects.filter(pk__in=ids).update(enqueued_at=timezone.now())  # handed over, as the sweep does
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
