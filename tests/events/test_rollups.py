"""The hourly rollups reports read: counted by the periodic job from real processing, idempotent,
and only for the hours touched since the job's last run."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.db import transaction
from django.utils import timezone

from campaign.models import Quarantine
from events import pipeline, rollups
from events.models import Event, HourlyRollup, RollupProgress
from events.schema import validate_event
from events.services import ingest
from messages.models import Delivery
from tests.conftest import publish_events, seed_body
from tests.events.test_pipeline import WELCOME
from tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db
FUTURE = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.000Z")


def accept(configuration, **overrides) -> Event:
    body = {**seed_body(scheduled=None, expiration=FUTURE), **overrides}
    event, _ = ingest(
        configuration=configuration, validated=validate_event(configuration.published_schema, body)
    )
    return event


def send_a_mix(configuration, organization, settings) -> None:
    """Two sent, one hard bounce, one soft bounce then a final failure, one quarantined (ignored),
    one still waiting."""
    settings.EVENT_MAX_ATTEMPTS = 2
    for address in ("a@example.com", "b@example.com", "reject-me@example.com"):
        pipeline.process(accept(configuration, email=address).pk)
    soft = accept(configuration, email="tempfail@example.com")
    assert pipeline.process(soft.pk) == "pending"
    Event.objects.filter(pk=soft.pk).update(next_attempt_at=timezone.now())
    assert pipeline.process(soft.pk) == "deliveryFailed"
    Quarantine.objects.create(organization=organization, channel="email", address="q@example.com")
    assert pipeline.process(accept(configuration, email="q@example.com").pk) == "ignored"
    accept(configuration, email="later@example.com")  # received, not processed yet


def totals() -> dict[str, int]:
    rows = HourlyRollup.objects.all()
    return {field: sum(getattr(r, field) for r in rows) for field in rollups.COUNT_FIELDS}


def test_the_rollup_counts_what_the_database_holds_after_real_sends(
    cart_configuration, organization, smtp_email, settings
):
    send_a_mix(cart_configuration, organization, settings)
    assert rollups.refresh() == 1  # one hour touched

    counted = totals()
    events = Event.objects.all()
    deliveries = Delivery.objects.filter(is_proof=False)
    assert counted["received"] == events.count() == 6
    assert counted["processed"] == events.filter(status="processed").count() == 2
    assert counted["delivery_failed"] == events.filter(status="deliveryFailed").count() == 2
    assert counted["ignored"] == events.filter(status="ignored").count() == 1
    assert counted["sent"] == deliveries.count() == 5
    assert counted["delivered"] == deliveries.filter(outcome="sent").count() == 2
    assert counted["bounced_hard"] == deliveries.filter(outcome="permanentFailure").count() == 1
    assert counted["bounced_soft"] == deliveries.filter(outcome="temporaryFailure").count() == 2
    # Opens and clicks wait for tracking: zero until it records them.
    assert counted["opened"] == counted["clicked"] == 0

    row = HourlyRollup.objects.get(version=cart_configuration.message.live_version)
    assert row.organization == organization and row.channel == "email"
    assert row.hour == rollups.hour_of(Event.objects.earliest("created_at").created_at)
    # Every final event is in a latency bucket of its row.
    assert sum(sum(r.latency_buckets) for r in HourlyRollup.objects.all()) == 5
    reasons = dict(map(tuple, row.failure_reasons["deliveryFailed"]))
    assert sum(reasons.values()) == 2
    assert any("550" in reason for reason in reasons) and any("451" in reason for reason in reasons)


def test_running_the_job_twice_gives_the_same_rows(cart_configuration, organization, smtp_email, settings):
    send_a_mix(cart_configuration, organization, settings)
    rollups.refresh()
    first = list(HourlyRollup.objects.values())
    RollupProgress.objects.update(last_run_at=None)  # the next run redoes every hour
    rollups.refresh()
    rollups.refresh()
    again = list(HourlyRollup.objects.values())
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("id", "computed_at")} for r in rows]  # noqa: E731
    assert strip(again) == strip(first)


def test_a_later_run_recomputes_only_the_hours_touched_since(cart_configuration, smtp_email, settings):
    settings.ROLLUP_GRACE_SECONDS = 0
    old = accept(cart_configuration, email="old@example.com")
    three_hours_ago = timezone.now() - dt.timedelta(hours=3)
    Event.objects.filter(pk=old.pk).update(created_at=three_hours_ago, updated_at=three_hours_ago)
    rollups.refresh()
    assert HourlyRollup.objects.count() == 1
    untouched = HourlyRollup.objects.get()

    # A new event, and the old one processed now: both their reception hours are redone.
    accept(cart_configuration, email="new@example.com")
    assert pipeline.process(old.pk) == "processed"
    assert rollups.refresh() == 2
    old_hour = HourlyRollup.objects.get(hour=rollups.hour_of(three_hours_ago))
    assert (old_hour.received, old_hour.processed, old_hour.delivered) == (1, 1, 1)
    assert old_hour.pk != untouched.pk
    assert HourlyRollup.objects.count() == 2

    # Nothing changed since: nothing is recomputed.
    assert rollups.refresh() == 0


def test_rollups_keep_the_counts_of_deleted_events_even_when_their_hour_is_redone(
    cart_configuration, smtp_email, settings
):
    settings.ROLLUP_GRACE_SECONDS = 0
    gone = accept(cart_configuration, email="gone@example.com")
    pipeline.process(gone.pk)
    waiting = accept(cart_configuration, email="waiting@example.com")
    rollups.refresh()
    with transaction.atomic():  # as a purge, or a person's erasure, does
        assert rollups.retire([gone.pk]) == 1
        Event.objects.filter(pk=gone.pk).delete()
    # Another event of the same hour ends: the hour is counted again, without the deleted one.
    assert pipeline.process(waiting.pk) == "processed"
    assert rollups.refresh() == 1
    assert (totals()["received"], totals()["processed"], totals()["delivered"]) == (2, 2, 2)
    assert sum(sum(r.latency_buckets) for r in HourlyRollup.objects.all()) == 2
    # The waiting event had no version yet: it moved from the row without one to its version's.
    assert not HourlyRollup.objects.filter(version=None).exists()
    rollups.refresh()
    RollupProgress.objects.update(last_run_at=None)
    rollups.refresh()
    assert (totals()["received"], totals()["processed"], totals()["delivered"]) == (2, 2, 2)


def test_events_deleted_before_the_job_counted_them_are_counted_from_what_was_retired(
    cart_configuration, smtp_email
):
    rollups.refresh()
    event = accept(cart_configuration, email="quick@example.com")
    pipeline.process(event.pk)
    with transaction.atomic():
        rollups.retire([event.pk])
        event.delete()
    assert rollups.refresh() == 1  # the retired counts' hour
    assert (totals()["received"], totals()["delivered"]) == (1, 1)


def test_an_opt_out_through_a_messages_link_counts_for_the_version_that_sent_it(organization, client):
    configuration = publish_events(organization, WELCOME)[0]
    jane = ProfileFactory(organization=organization, email="jane@example.com")
    ProfileFactory(organization=organization, email="joe@example.com")
    sent_to = {}
    for profile in ("jane", "joe"):
        event = accept(configuration, ctx={"email": f"{profile}@example.com", "plan": "gold"})
        assert pipeline.process(event.pk) == "processed"
        sent_to[profile] = event
    jane_link = mail.outbox[0].extra_headers["List-Unsubscribe"].strip("<>").split("localhost:8000", 1)[1]
    assert jane_link.endswith(f"?e={sent_to['jane'].pkey}")

    # Jane's link with Joe's event's PKey: Jane opts out, but nothing is counted for Joe's event.
    assert client.post(jane_link.replace(sent_to["jane"].pkey, sent_to["joe"].pkey)).status_code == 200
    rollups.refresh()
    assert totals()["unsubscribed"] == 0
    # Her own link, twice (a second click, a mail client's one-click POST): counted once.
    for _ in range(2):
        assert client.post(jane_link, {"List-Unsubscribe": "One-Click"}).status_code == 200
    jane.refresh_from_db()
    assert jane.opted_out
    rollups.refresh()
    row = HourlyRollup.objects.get(version=configuration.message.live_version)
    assert row.unsubscribed == 1


def test_an_open_after_the_last_run_redoes_its_events_hour_and_deleted_hits_stay_counted(
    organization, smtp_email, settings, client
):
    import copy

    from tests.messages.test_tracking import (
        BROWSER,
        LINKS_EVENT,
        PUBLIC,
        pixel_of,
        send_one,
        sent_a_while_ago,
    )

    settings.PUBLIC_URL, settings.ROLLUP_GRACE_SECONDS = PUBLIC + "/", 0
    configuration = publish_events(organization, copy.deepcopy(LINKS_EVENT))[0]
    event, html = send_one(configuration, smtp_email)
    sent_a_while_ago(event)
    rollups.refresh()
    assert totals()["opened"] == 0
    assert (
        client.get(pixel_of(html), HTTP_USER_AGENT=BROWSER).status_code == 200
    )  # the event row is unchanged
    assert rollups.refresh() == 1
    assert (totals()["opened"], totals()["opened_unique"]) == (1, 1)


def test_the_purge_and_a_persons_erasure_leave_the_report_of_their_period_unchanged(
    organization, smtp_email, settings, client
):
    import copy

    from events import person, reports, retention
    from messages.models import TrackingHit
    from tests.messages.test_tracking import BROWSER, LINKS_EVENT, PUBLIC, pixel_of, send_one, tracked_links

    settings.PUBLIC_URL = PUBLIC + "/"
    settings.EVENT_RETENTION_DAYS = settings.DELIVERY_RETENTION_DAYS = settings.TRACKING_RETENTION_DAYS = 2
    configuration = publish_events(organization, copy.deepcopy(LINKS_EVENT))[0]
    settings.EVENT_MAX_ATTEMPTS = 1
    pages = [send_one(configuration, smtp_email, email=f"p{i}@example.com")[1] for i in range(3)]
    pipeline.process(accept(configuration, email="reject-me@example.com").pk)
    for html in pages[:2]:
        assert client.get(tracked_links(html)[0], HTTP_USER_AGENT=BROWSER).status_code == 302
    assert client.get(pixel_of(pages[2]), HTTP_USER_AGENT=BROWSER).status_code == 200
    three_days_ago = timezone.now() - dt.timedelta(days=3)
    Event.objects.update(created_at=three_days_ago, updated_at=three_days_ago)
    Delivery.objects.update(created_at=three_days_ago)
    TrackingHit.objects.update(created_at=three_days_ago)
    rollups.refresh()

    def report() -> dict[str, int]:
        form = reports.PeriodForm({"period": "7d"})
        assert form.is_valid()
        return reports.build(
            HourlyRollup.objects.all(), form.period_in(reports.time_zone_of(organization))
        ).totals

    before = report()
    assert (before["received"], before["delivered"], before["bounced_hard"]) == (4, 3, 1)
    assert (before["clicked"], before["opened"]) == (2, 1)

    person.forget_person(organization=organization, email="p0@example.com")
    deleted = retention.purge()
    assert deleted["events.Event"] == 3 and not Event.objects.exists() and not TrackingHit.objects.exists()
    rollups.refresh()
    RollupProgress.objects.update(last_run_at=None)  # even a run that counts every hour again
    rollups.refresh()
    assert report() == before
