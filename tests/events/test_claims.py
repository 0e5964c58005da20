"""Claims and leases: which worker holds an event, and for how long."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.utils import timezone

from events import claims
from events.models import Event
from tests.events.test_pipeline import accept, live_body

pytestmark = pytest.mark.django_db


def test_the_lease_is_renewed_before_a_send_only_once_half_of_it_is_gone(cart_configuration, settings):
    settings.EVENT_LEASE_SECONDS = 60
    event = accept(cart_configuration, live_body())
    lease = claims.claim(event.pk, now=timezone.now())
    fresh = claims.Claim(event_id=event.pk, lease=lease)
    fresh.renew()
    assert fresh.lease == lease  # most of the lease left: no write
    old = timezone.now() + dt.timedelta(seconds=10)
    Event.objects.filter(pk=event.pk).update(lease_expires_at=old)
    aging = claims.Claim(event_id=event.pk, lease=old)
    aging.renew()
    assert aging.lease > old and Event.objects.get(pk=event.pk).lease_expires_at == aging.lease
    Event.objects.filter(pk=event.pk).update(lease_expires_at=timezone.now())  # taken over meanwhile
    with pytest.raises(claims.LeaseLost):
        claims.Claim(event_id=event.pk, lease=timezone.now() + dt.timedelta(seconds=5)).renew()


def test_claim_due_takes_the_tasks_own_events_first_then_the_due_backlog_up_to_the_limit(cart_configuration):
    backlog = [accept(cart_configuration, live_body(email=f"d{n}@example.com")) for n in range(3)]
    later = accept(
        cart_configuration, live_body(scheduled=(timezone.now() + dt.timedelta(hours=1)).isoformat())
    )
    mine = accept(cart_configuration, live_body(email="mine@example.com"))
    ids, lease = claims.claim_due([mine.pk, later.pk], now=timezone.now(), limit=3)
    assert ids == [mine.pk, backlog[0].pk, backlog[1].pk]  # the scheduled one is not due
    claimed = Event.objects.filter(pk__in=ids)
    assert {(e.status, e.attempts, e.lease_expires_at) for e in claimed} == {("processing", 1, lease)}
    assert claims.claim_due([mine.pk], now=timezone.now(), limit=3)[0] == [backlog[2].pk]
    assert claims.claim_due([mine.pk], now=timezone.now(), limit=3)[0] == []


def test_events_released_unprocessed_are_due_again_as_before_their_claim(cart_configuration):
    event = accept(cart_configuration, live_body())
    lease = claims.claim(event.pk, now=timezone.now())
    assert lease is not None
    assert claims.release_unprocessed([event.pk], lease=timezone.now(), reason="not ours") == []
    assert claims.release_unprocessed([event.pk], lease=lease, reason="not processed") == [event.pk]
    event.refresh_from_db()
    assert (event.status, event.attempts, event.lease_expires_at) == ("pending", 0, None)
    assert event.next_attempt_at <= timezone.now() and claims.claim(event.pk, now=timezone.now())


@pytest.mark.django_db(transaction=True)  # outside a transaction: PostgreSQL's one-statement claims
def test_a_claim_outside_a_transaction_takes_the_own_events_then_the_oldest_due_with_history(
    cart_configuration, django_assert_max_num_queries
):
    import contextlib

    from django.db import connection

    backlog = [accept(cart_configuration, live_body(email=f"o{n}@example.com")) for n in range(3)]
    later = accept(
        cart_configuration, live_body(scheduled=(timezone.now() + dt.timedelta(hours=1)).isoformat())
    )
    mine = accept(cart_configuration, live_body(email="mine@example.com"))
    two_statements = (
        django_assert_max_num_queries(2) if connection.vendor == "postgresql" else contextlib.nullcontext()
    )
    with two_statements:  # its own events, then the backlog
        ids, lease = claims.claim_due([mine.pk, later.pk], now=timezone.now(), limit=3)
    assert ids == [mine.pk, backlog[0].pk, backlog[1].pk]
    for event in Event.objects.filter(pk__in=ids):
        assert (event.status, event.attempts, event.lease_expires_at) == ("processing", 1, lease)
        assert [(c.from_status, c.to_status) for c in event.status_changes.all()] == [
            ("pending", "processing")
        ]
    assert Event.objects.get(pk=later.pk).status == "pending"
    assert claims.claim_due([], now=timezone.now(), limit=3)[0] == [backlog[2].pk]
    assert claims.claim_due([mine.pk], now=timezone.now(), limit=3)[0] == []


@pytest.mark.parametrize(
    "one_statement",
    [
        pytest.param(False, id="in-a-transaction"),
        pytest.param(True, id="one-statement", marks=pytest.mark.django_db(transaction=True)),
    ],
)
def test_a_backlog_leaves_events_just_handed_to_another_task_and_takes_those_stuck_in_its_queue(
    cart_configuration, settings, one_statement
):
    """A task that starts promptly keeps its events (other machines' workers share a burst); one
    queued behind busy processes loses them to a task that runs, instead of making them wait."""
    settings.EVENT_BACKLOG_TAKEOVER_SECONDS = 0.25
    just_handed, stuck, free = (
        accept(cart_configuration, live_body(email=f"h{n}@example.com")) for n in range(3)
    )
    now = timezone.now()
    Event.objects.filter(pk=just_handed.pk).update(enqueued_at=now - dt.timedelta(seconds=0.1))
    Event.objects.filter(pk=stuck.pk).update(enqueued_at=now - dt.timedelta(seconds=2))
    ids, _ = claims.claim_due([], now=now, limit=10)
    assert sorted(ids) == sorted([stuck.pk, free.pk])
    assert Event.objects.get(pk=just_handed.pk).status == "pending"
    # Its own task, when it starts, still finds it.
    assert claims.claim_due([just_handed.pk], now=now, limit=10)[0] == [just_handed.pk]


# --- the lease and the longest a send can take ---------------------------------------------------


def test_a_lease_is_ample_only_with_more_left_than_the_channels_longest_send(settings):
    settings.EVENT_LEASE_SECONDS, settings.RENDER_TIMEOUT_SECONDS = 60, 2
    now = timezone.now()
    lease = now + dt.timedelta(seconds=40)
    assert claims.lease_is_ample(lease, now=now, send_seconds=10)
    assert not claims.lease_is_ample(lease, now=now, send_seconds=38)  # 38 s of send + 2 of render


@pytest.mark.django_db
def test_the_lease_kept_before_a_send_is_the_channels_backends_own_bound(
    cart_configuration, settings, smtp_email, monkeypatch
):
    """SMTP with EMAIL_TIMEOUT=3: four exchanges of 3 s and a margin, not a bound of its own."""
    from events import pipeline

    settings.EMAIL_TIMEOUT = 3
    asked: list[float | None] = []
    real = claims.lease_is_ample

    def noted(lease, *, now, send_seconds=None):
        asked.append(send_seconds)
        return real(lease, now=now, send_seconds=send_seconds)

    monkeypatch.setattr(claims, "lease_is_ample", noted)
    event = accept(cart_configuration, live_body())
    assert pipeline.process(event.pk) == "processed"
    assert 4 * 3 + 5 in asked


@pytest.mark.django_db
def test_a_send_that_could_outlive_the_claim_waits_unsent_and_uncounted(cart_configuration, monkeypatch):
    from django.core import mail

    from events import pipeline

    real = pipeline._send_deadline
    monkeypatch.setattr(pipeline, "_send_deadline", lambda lease: time.monotonic() + 0.5)  # 0.5 s left
    event = accept(cart_configuration, live_body())
    assert pipeline.process(event.pk) == "pending"
    event.refresh_from_db()
    assert event.attempts == 0 and not event.deliveries.exists() and mail.outbox == []
    change = event.status_changes.last()
    assert change.code == "leaseTooShort" and "left of the claim's lease" in change.reason
    monkeypatch.setattr(pipeline, "_send_deadline", real)
    Event.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())
    assert pipeline.process(event.pk) == "processed" and len(mail.outbox) == 1
