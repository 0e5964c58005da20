"""History kept as long as it is wanted: what is past retention goes, in bounded batches; events
still in progress, events within the Idempotency-Key window and deliveries of events in progress
stay; an organization may keep its history longer or shorter; a purged event answers 404."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from events import pipeline, retention
from events.models import Event, EventStatusChange
from events.schema import validate_event
from events.services import ingest
from messages.models import Delivery
from tests.conftest import CART_URL, seed_body

pytestmark = pytest.mark.django_db
FUTURE = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.000Z")


@pytest.fixture(autouse=True)
def _retention(settings):
    settings.EVENT_RETENTION_DAYS = 30
    settings.DELIVERY_RETENTION_DAYS = 30
    settings.TRACKING_RETENTION_DAYS = 30
    settings.IDEMPOTENCY_WINDOW_SECONDS = 24 * 3600


def sent(configuration, *, days_ago: float) -> Event:
    """An event processed (its delivery sent) `days_ago`."""
    event, _ = ingest(
        configuration=configuration,
        validated=validate_event(
            configuration.published_schema, seed_body(scheduled=None, expiration=FUTURE)
        ),
    )
    assert pipeline.process(event.pk) == "processed"
    when = timezone.now() - dt.timedelta(days=days_ago)
    Event.objects.filter(pk=event.pk).update(created_at=when)
    Delivery.objects.filter(event_link__event=event).update(created_at=when)
    return event


def pending(configuration, *, days_ago: float) -> Event:
    event, _ = ingest(
        configuration=configuration,
        validated=validate_event(
            configuration.published_schema, seed_body(scheduled=None, expiration=FUTURE)
        ),
    )
    Event.objects.filter(pk=event.pk).update(created_at=timezone.now() - dt.timedelta(days=days_ago))
    return event


def exists(event: Event) -> bool:
    return Event.objects.filter(pk=event.pk).exists()


def test_purge_removes_what_is_past_retention_and_keeps_the_rest(cart_configuration):
    old, recent = sent(cart_configuration, days_ago=40), sent(cart_configuration, days_ago=10)
    waiting = pending(cart_configuration, days_ago=40)  # not final: never purged, however old
    old_delivery = old.deliveries.get()
    deleted = retention.purge()
    assert not exists(old) and exists(recent) and exists(waiting)
    assert not EventStatusChange.objects.filter(event_id=old.pk).exists()  # its history went with it
    assert not Delivery.objects.filter(pk=old_delivery.pk).exists()
    assert recent.deliveries.count() == 1
    assert deleted["events.Event"] == 1 and deleted["transactional.Delivery"] == 1
    assert deleted["events.EventStatusChange"] == 2  # processing, processed
    assert retention.purge() == {
        "events.Event": 0,
        "transactional.Delivery": 0,
        "transactional.TrackingHit": 0,
        "transactional.DraftTry": 0,
    }


def test_a_final_event_within_the_idempotency_window_is_kept_even_past_retention(
    cart_configuration, settings
):
    settings.EVENT_RETENTION_DAYS = 1
    settings.IDEMPOTENCY_WINDOW_SECONDS = 3 * 24 * 3600
    within, beyond = sent(cart_configuration, days_ago=2), sent(cart_configuration, days_ago=4)
    retention.purge()
    assert exists(within) and not exists(beyond)


def test_the_delivery_of_an_event_in_progress_is_kept(cart_configuration):
    event = sent(cart_configuration, days_ago=40)
    Event.objects.filter(pk=event.pk).update(status="pending")  # retried: the pipeline reads its delivery
    retention.purge()
    assert exists(event) and event.deliveries.count() == 1


def test_an_organization_keeps_its_history_as_long_as_it_says(cart_configuration, organization, settings):
    old = sent(cart_configuration, days_ago=40)
    organization.event_retention_days = 60
    organization.delivery_retention_days = 35
    organization.save()
    retention.purge()
    # The delivery outlived its 35 days but stays with its event: the event's report counts it.
    assert exists(old) and old.deliveries.count() == 1
    organization.event_retention_days = 10
    organization.save()
    settings.EVENT_RETENTION_DAYS = 0  # the installation keeps forever; the organization does not
    retention.purge()
    assert not exists(old) and not Delivery.objects.exists()  # the delivery goes with it, in one run


def test_zero_days_keeps_forever(cart_configuration, settings):
    settings.EVENT_RETENTION_DAYS = 0
    settings.DELIVERY_RETENTION_DAYS = 0
    old = sent(cart_configuration, days_ago=4000)
    assert retention.count_purgeable() == {
        "events.Event": 0, "transactional.Delivery": 0, "transactional.TrackingHit": 0,
        "transactional.DraftTry": 0,
    }  # fmt: skip
    retention.purge()
    assert exists(old) and old.deliveries.count() == 1


def test_the_beat_purges_in_bounded_batches(cart_configuration, settings):
    from events.tasks import purge_history

    old = [sent(cart_configuration, days_ago=40) for _ in range(5)]
    settings.RETENTION_BATCH_SIZE = 2
    settings.RETENTION_MAX_BATCHES = 1
    assert "events.purge_history" in {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert purge_history()["events.Event"] == 2  # one batch of two this run
    assert sum(exists(event) for event in old) == 3
    purge_history(), purge_history()
    assert not any(exists(event) for event in old)


def test_a_purged_event_answers_404(api, cart_configuration):
    event = sent(cart_configuration, days_ago=40)
    assert api.get(f"{CART_URL}/{event.pkey}").status_code == 200
    retention.purge()
    response = api.get(f"{CART_URL}/{event.pkey}")
    assert response.status_code == 404


def test_purge_dry_run_counts_per_table_and_deletes_nothing(cart_configuration):
    old = [sent(cart_configuration, days_ago=40) for _ in range(3)]
    pending(cart_configuration, days_ago=40)
    out = io.StringIO()
    call_command("purge", "--dry-run", stdout=out)
    assert out.getvalue().splitlines() == [
        "events.Event: 3 to delete",
        "transactional.Delivery: 3 to delete",
        "transactional.TrackingHit: 0 to delete",
        "transactional.DraftTry: 0 to delete",
    ]
    assert all(exists(event) for event in old) and Delivery.objects.count() == 3
    out = io.StringIO()
    call_command("purge", stdout=out)
    assert "events.Event: 3 deleted" in out.getvalue().splitlines()
    assert not any(exists(event) for event in old)


def test_an_administrator_sets_the_organizations_retention_within_bounds(client, administrator, organization):
    from tests.admin_forms import change_form_data

    url = reverse("admin:campaign_organization_change", args=[organization.pk])
    client.force_login(administrator)
    refused = client.post(url, change_form_data(client.get(url), event_retention_days="0"))
    assert refused.status_code == 200 and "greater than or equal to 1" in refused.content.decode()
    organization.refresh_from_db()
    assert organization.event_retention_days is None
    client.post(
        url, change_form_data(client.get(url), event_retention_days="365", delivery_retention_days="")
    )
    organization.refresh_from_db()
    assert organization.event_retention_days == 365 and organization.delivery_retention_days is None


def test_a_delivery_kept_longer_than_its_event_stays_after_it_then_goes(cart_configuration, settings):
    settings.DELIVERY_RETENTION_DAYS = 60
    event = sent(cart_configuration, days_ago=40)
    delivery = event.deliveries.get()
    retention.purge()
    assert not exists(event) and Delivery.objects.filter(pk=delivery.pk).exists()
    settings.DELIVERY_RETENTION_DAYS = 30
    assert retention.purge()["transactional.Delivery"] == 1


def test_opens_and_clicks_go_after_their_retention_once_their_event_is_gone(cart_configuration, settings):
    from messages.models import TrackingHit

    settings.DELIVERY_RETENTION_DAYS = 365
    settings.TRACKING_RETENTION_DAYS = 60
    event = sent(cart_configuration, days_ago=40)
    delivery = event.deliveries.get()

    def hit(days_ago: int) -> TrackingHit:
        return TrackingHit.objects.create(
            organization_id=delivery.organization_id, delivery=delivery, message_id=delivery.message_id,
            version_id=delivery.version_id, kind="open",
            created_at=timezone.now() - dt.timedelta(days=days_ago),
        )  # fmt: skip

    old, recent = hit(100), hit(20)
    settings.EVENT_RETENTION_DAYS = 365
    retention.purge()
    assert TrackingHit.objects.count() == 2  # its event is kept: the event's report counts them
    settings.EVENT_RETENTION_DAYS = 30
    assert retention.count_purgeable()["transactional.TrackingHit"] == 1
    retention.purge()
    assert not exists(event) and list(TrackingHit.objects.all()) == [recent]
    assert not TrackingHit.objects.filter(pk=old.pk).exists()


def test_the_report_of_a_purged_period_is_unchanged(cart_configuration, settings):
    from events import rollups
    from events.models import RollupProgress
    from tests.events.test_rollups import totals

    settings.ROLLUP_GRACE_SECONDS = 0
    old = [sent(cart_configuration, days_ago=40) for _ in range(3)]
    waiting = pending(cart_configuration, days_ago=40)  # of the same hour, ends after the purge
    sent(cart_configuration, days_ago=1)
    rollups.refresh()
    before = totals()
    assert before["received"] == 5 and before["delivered"] == 4
    retention.purge()
    assert not any(exists(event) for event in old)
    rollups.refresh()
    assert totals() == before
    # The purged hour is counted again when its last event ends, and when everything is recounted.
    assert pipeline.process(waiting.pk) == "processed"
    rollups.refresh()
    after = totals()
    assert (after["received"], after["delivered"], after["processed"]) == (5, 5, 5)
    RollupProgress.objects.update(last_run_at=None)
    rollups.refresh()
    assert totals() == after
