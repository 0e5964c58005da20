"""An event's story (events.timeline), built from what processing records: every status change with
its stable reason code, the claim's worker, the version routed to, the delivery and its Message-ID."""

from __future__ import annotations

import copy
import datetime as dt
import io
import os
import re
import socket
from pathlib import Path

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.core import mail
from django.utils import timezone

from campaign.models import Quarantine
from campaign.resources import import_resource_csv
from events import pipeline, publication, reasons, sweep, timeline
from events.models import Event, EventStatusChange, FatigueRule, TypologyRule
from events.publication import unpublish_configuration
from events.schema import validate_event
from events.services import ingest
from events.typology import default_typology
from messages import services as message_services
from messages.models import Delivery, MessageVersion, TrackingHit
from tests.conftest import publish_events, seed_body
from tests.events.test_enrichment import CART, CATALOGUE
from tests.events.test_push_fcm import push
from tests.factories import ProfileFactory
from tests.fcm import FakeGoogle, fcm_error, use_fake

pytestmark = pytest.mark.django_db
FUTURE = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.000Z")
WORKER = f"{socket.gethostname()}:{os.getpid()}"


def accept(configuration, body) -> Event:
    event, _ = ingest(
        configuration=configuration, validated=validate_event(configuration.published_schema, body)
    )
    return event


def live_body(**overrides):
    return {**seed_body(scheduled=None, expiration=FUTURE), **overrides}


def story(event) -> dict:
    return timeline.event_timeline(Event.objects.select_related("configuration").get(pk=event.pk))


def codes(event) -> list[tuple[str, str | None]]:
    return [(s["to"], s["code"]) for s in story(event)["steps"] if s["step"] == "statusChanged"]


def test_a_processed_events_story_names_its_worker_version_delivery_and_message_id(cart_configuration):
    event = accept(cart_configuration, live_body())
    assert pipeline.process(event.pk) == "processed"
    told = story(event)
    assert told["PKey"] == event.pkey and told["status"] == "processed" and told["truncated"] is False
    assert told["type"] == "EVTcartAbandonment"
    kinds = [step["step"] for step in told["steps"]]
    assert kinds == ["received", "statusChanged", "routed", "delivery", "attempt", "statusChanged"]
    received, claimed, routed, delivery, attempt, processed = told["steps"]
    assert claimed["code"] == "claimed" and claimed["worker"] == WORKER and claimed["attempt"] == 1
    assert routed["version"] == cart_configuration.message.live_version.number == 1
    message_id = mail.outbox[0].extra_headers["Message-ID"]
    assert delivery["outcome"] == "sent" and delivery["messageId"] == message_id
    assert delivery["version"] == 1 and delivery["attempt"] == 1
    assert attempt["worker"] == WORKER and attempt["durationMs"] >= 0 and attempt["code"] == "sent"
    assert processed["from"] == "processing" and processed["to"] == "processed"
    assert processed["code"] == "sent"
    ats = [step["at"] for step in told["steps"]]
    assert ats == sorted(ats) or ats[3] >= ats[2]  # the delivery is recorded with the attempt's end
    # No ctx value, nor free-text reason, anywhere in the story.
    assert "Jack" not in str(told) and "Leather" not in str(told)


def test_a_quarantined_address_is_ignored_with_its_code(cart_configuration, organization):
    Quarantine.objects.create(organization=organization, channel="email", address="test@example.com")
    event = accept(cart_configuration, live_body())
    assert pipeline.process(event.pk) == "ignored"
    assert codes(event) == [("processing", "claimed"), ("ignored", "quarantined")]
    assert "test@example.com" not in str(story(event))


def test_a_permanent_failure_is_provider_rejected_with_its_enhanced_status_code(
    cart_configuration, smtp_email
):
    event = accept(cart_configuration, live_body(email="reject-me@example.com"))
    assert pipeline.process(event.pk) == "deliveryFailed"
    assert codes(event)[-1] == ("deliveryFailed", "providerRejected:5.1.1")
    (delivery,) = [s for s in story(event)["steps"] if s["step"] == "delivery"]
    assert delivery["outcome"] == "permanentFailure"
    assert delivery["providerResponse"].startswith("550 5.1.1") and "reject-me@" not in str(story(event))


def test_retries_then_a_failure_for_good_each_have_their_code(cart_configuration, smtp_email, settings):
    settings.EVENT_MAX_ATTEMPTS = 2
    event = accept(cart_configuration, live_body(email="tempfail@example.com"))
    assert pipeline.process(event.pk) == "pending"
    Event.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())
    assert pipeline.process(event.pk) == "deliveryFailed"
    assert codes(event) == [
        ("processing", "claimed"),
        ("pending", "retryScheduled"),
        ("processing", "claimed"),
        ("deliveryFailed", "providerUnavailable"),
    ]
    deliveries = [s for s in story(event)["steps"] if s["step"] == "delivery"]
    assert [(d["attempt"], d["outcome"]) for d in deliveries] == [
        (1, "temporaryFailure"),
        (2, "temporaryFailure"),
    ]
    attempts = [s for s in story(event)["steps"] if s["step"] == "attempt"]
    assert [(a["attempt"], a["code"]) for a in attempts] == [
        (1, "retryScheduled"),
        (2, "providerUnavailable"),
    ]


def test_routing_failures_have_their_codes(cart_configuration, organization):
    message = cart_configuration.message
    event = accept(cart_configuration, live_body())
    message.status = "draft"
    message.save(update_fields=["status"])
    assert pipeline.process(event.pk) == "routingFailed"
    assert codes(event)[-1] == ("routingFailed", "noPublishedMessage")
    assert not [s for s in story(event)["steps"] if s["step"] == "routed"]  # never routed
    message.status = "published"
    message.save(update_fields=["status"])
    waiting = accept(cart_configuration, live_body())
    unpublish_configuration(configuration=cart_configuration)
    assert codes(waiting) == [("routingFailed", "unpublished")]


def test_a_paused_event_is_routed_at_resume_to_the_version_live_then(cart_configuration):
    message = cart_configuration.message
    event = accept(cart_configuration, live_body())
    message = publication.pause_message(message=message)
    message.subject = "Second version"
    message.save()
    publication.publish_message(message=message)  # publishing a paused message resumes it
    assert pipeline.process(event.pk) == "processed"
    assert codes(event) == [
        ("paused", "paused"),
        ("pending", "resumed"),
        ("processing", "claimed"),
        ("processed", "sent"),
    ]
    (routed,) = [s for s in story(event)["steps"] if s["step"] == "routed"]
    assert routed["version"] == 2
    assert Event.objects.get(pk=event.pk).message_version.number == 2


def test_the_version_is_pinned_when_routed_even_when_nothing_is_sent(cart_configuration, organization):
    Quarantine.objects.create(organization=organization, channel="email", address="test@example.com")
    event = accept(cart_configuration, live_body())
    pipeline.process(event.pk)
    assert Event.objects.get(pk=event.pk).message_version == cart_configuration.message.live_version


def test_a_worker_that_paused_the_event_pins_no_version(cart_configuration):
    event = accept(cart_configuration, live_body())
    message = cart_configuration.message
    message.status = "paused"
    message.save(update_fields=["status"])
    assert pipeline.process(event.pk) == "paused"
    assert codes(event)[-1] == ("paused", "paused")
    assert Event.objects.get(pk=event.pk).message_version is None


def test_expiry_and_the_sweep_have_their_codes(cart_configuration):
    old = accept(cart_configuration, seed_body())  # the seed's 2017 expiration
    assert pipeline.process(old.pk) == "tooOld"
    assert codes(old)[-1] == ("tooOld", "expired")
    held = accept(cart_configuration, live_body())
    Event.objects.filter(pk=held.pk).update(
        status="processing", lease_expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    sweep.recover()
    assert codes(held)[-1] == ("pending", "leaseExpired")


WELCOME = {
    "name": "welcome",
    "channel": "email",
    "targeting": "profile",
    "fields": [{"name": "email", "type": "email"}, {"name": "plan", "type": "text"}],
    "reconciliation": {"eventField": "email", "profileField": "email"},
    "message": {"subject": "Welcome {{ profile.firstName }}", "text": "Plan {{ ctx.plan }}"},
}


def test_profile_targeting_outcomes_have_their_codes(organization):
    configuration = publish_events(organization, WELCOME)[0]
    nobody = accept(configuration, {"ctx": {"email": "nobody@example.com", "plan": "gold"}})
    assert pipeline.process(nobody.pk) == "targetingFailed"
    assert codes(nobody)[-1] == ("targetingFailed", "noProfile")

    ProfileFactory(organization=organization, email="out@example.com", blocklisted=True)
    out = accept(configuration, {"ctx": {"email": "out@example.com", "plan": "gold"}})
    assert pipeline.process(out.pk) == "ignored"
    assert codes(out)[-1] == ("ignored", "optedOut")

    typology = default_typology(organization=organization)
    rule = TypologyRule.objects.create(typology=typology, code="no_gold", name="No gold")
    rule.conditions.create(field="firstName", operator="equals", value="Goldie")
    ProfileFactory(organization=organization, email="goldie@example.com", first_name="Goldie")
    gold = accept(configuration, {"ctx": {"email": "goldie@example.com", "plan": "gold"}})
    assert pipeline.process(gold.pk) == "ignored"
    assert codes(gold)[-1] == ("ignored", "typology:no_gold")

    FatigueRule.objects.create(organization=organization, name="One a day", max_messages=1, period_hours=24)
    ProfileFactory(organization=organization, email="jane@example.com")
    first = accept(configuration, {"ctx": {"email": "jane@example.com", "plan": "a"}})
    assert pipeline.process(first.pk) == "processed"
    second = accept(configuration, {"ctx": {"email": "jane@example.com", "plan": "b"}})
    assert pipeline.process(second.pk) == "ignored"
    assert codes(second)[-1] == ("ignored", "fatigue")


def test_a_duplicate_rule_has_its_code(organization):
    configuration = publish_events(organization, WELCOME)[0]
    TypologyRule.objects.create(
        typology=default_typology(organization=organization),
        code="same_plan",
        name="Same",
        kind="duplicate",
        window_minutes=60,
    )
    ProfileFactory(organization=organization, email="jane@example.com")
    first = accept(configuration, {"ctx": {"email": "jane@example.com", "plan": "a"}})
    assert pipeline.process(first.pk) == "processed"
    again = accept(configuration, {"ctx": {"email": "jane@example.com", "plan": "a"}})
    assert pipeline.process(again.pk) == "ignored"
    assert codes(again)[-1] == ("ignored", "duplicate")


def test_opens_and_clicks_join_the_story_without_their_urls(cart_configuration, organization):
    event = accept(cart_configuration, live_body())
    pipeline.process(event.pk)
    delivery = Delivery.objects.get(event_link__event=event)
    common = {"organization": organization, "delivery": delivery, "message": delivery.message}
    TrackingHit.objects.create(**common, kind="open", first=True)
    TrackingHit.objects.create(**common, kind="click", link_index=0, url="https://shop.example/?name=Jack")
    told = story(event)
    opened, clicked = told["steps"][-2:]
    assert opened["step"] == "opened" and opened["first"] is True and opened["automated"] is False
    assert clicked["step"] == "clicked" and clicked["link"] == 0
    assert "shop.example" not in str(told) and "Jack" not in str(told)


def test_the_story_is_bounded_and_says_so(cart_configuration):
    event = accept(cart_configuration, live_body())
    EventStatusChange.objects.bulk_create(
        [
            EventStatusChange(event=event, from_status="pending", to_status="pending", code="x")
            for _ in range(12)
        ]
    )
    told = timeline.event_timeline(event, max_steps=10)
    assert len(told["steps"]) == 10 and told["truncated"] is True
    assert timeline.event_timeline(event, max_steps=20)["truncated"] is False


def test_every_code_the_pipeline_writes_is_in_the_table():
    documented = {code.split(":")[0] for code in reasons.CODES}
    written = {value for name, value in vars(reasons).items() if name.isupper() and isinstance(value, str)}
    assert written - {reasons.TYPOLOGY, reasons.PROVIDER_REJECTED} <= documented
    assert reasons.provider_rejected("550 5.1.1 <j***@example.com>: unknown") == "providerRejected:5.1.1"
    assert reasons.provider_rejected("554 rejected") == "providerRejected:554"
    assert reasons.provider_rejected("token dead: 404 UNREGISTERED") == "providerRejected:404"
    assert reasons.provider_rejected("gateway said no") == "providerRejected"


def test_the_readmes_table_lists_every_code_and_no_other():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Reason codes") : readme.index("## Event configuration file")]
    assert set(re.findall(r"^\| `([^`]+)` \|", section, re.M)) == set(reasons.CODES)


def test_render_failures_unpublished_types_and_expiry_before_a_retry_have_their_codes(
    cart_configuration, smtp_email, settings
):
    version = cart_configuration.message.live_version
    content = version.content
    MessageVersion.objects.filter(pk=version.pk).update(content={**content, "subject": "{{ 1 / 0 }}"})
    broken = accept(cart_configuration, live_body())
    assert pipeline.process(broken.pk) == "deliveryFailed"
    assert codes(broken)[-1] == ("deliveryFailed", "renderFailed")
    assert [s["version"] for s in story(broken)["steps"] if s["step"] == "routed"] == [1]
    MessageVersion.objects.filter(pk=version.pk).update(content=content)

    settings.EVENT_RETRY_DELAY_SECONDS = 3600
    soon = (timezone.now() + dt.timedelta(minutes=5)).isoformat()
    short = accept(
        cart_configuration, seed_body(scheduled=None, expiration=soon, email="tempfail@example.com")
    )
    assert pipeline.process(short.pk) == "tooOld"
    assert codes(short)[-1] == ("tooOld", "expiresBeforeRetry")

    unrouted = accept(cart_configuration, live_body())
    type(cart_configuration).objects.filter(pk=cart_configuration.pk).update(status="draft")
    assert pipeline.process(unrouted.pk) == "routingFailed"
    assert codes(unrouted)[-1] == ("routingFailed", "notPublished")


def test_an_event_an_earlier_attempt_sent_is_processed_with_its_code(cart_configuration):
    event = accept(cart_configuration, live_body())
    assert pipeline.process(event.pk) == "processed"
    # As if that attempt had died before recording: the event is back in the queue, its send linked.
    Event.objects.filter(pk=event.pk).update(status="pending")
    assert pipeline.process(event.pk) == "processed"
    assert codes(event)[-1] == ("processed", "sentByEarlierAttempt")
    assert len(mail.outbox) == 1


def test_events_a_task_out_of_time_hands_back_are_released(cart_configuration, monkeypatch):
    first, second = (accept(cart_configuration, live_body(email=f"t{n}@example.com")) for n in range(2))
    real_compose = message_services.compose

    def out_of_time_once(**kwargs):
        monkeypatch.setattr(message_services, "compose", real_compose)
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(message_services, "compose", out_of_time_once)
    assert pipeline.process_batch([first.pk]) == {}
    assert codes(first)[-1] == ("pending", "retryScheduled")
    assert codes(second) == [("processing", "claimed"), ("pending", "released")]


def test_a_missing_required_enrichment_has_its_code_and_the_story_quotes_no_ctx_value(organization):
    import_resource_csv(organization=organization, name="product", key="sku", handle=io.StringIO(CATALOGUE))
    cart = copy.deepcopy(CART)
    cart["enrichments"][0]["required"] = True
    configuration = publish_events(organization, cart)[0]
    ctx = {"firstName": "Jack", "items": [{"sku": "SKU-404", "quantity": 1}]}
    event = accept(configuration, {"email": "buyer@example.com", "expiration": FUTURE, "ctx": ctx})
    assert pipeline.process(event.pk) == "targetingFailed"
    assert "SKU-404" in event.status_changes.last().reason  # the reason, for people, names it
    assert codes(event)[-1] == ("targetingFailed", "enrichmentMissing")
    assert "SKU-404" not in str(story(event))  # the story does not


def test_the_reception_step_says_when_the_event_is_scheduled_and_expires(cart_configuration):
    when = timezone.now() + dt.timedelta(days=1)
    event = accept(cart_configuration, seed_body(scheduled=when.isoformat(), expiration=FUTURE))
    (received,) = story(event)["steps"]
    assert received["step"] == "received"
    assert received["scheduled"] == timeline.timestamp(Event.objects.get(pk=event.pk).scheduled_at)
    assert received["expiration"].endswith("Z") and received["expiration"] > received["scheduled"]


def test_a_push_service_refusing_a_token_or_a_payload_is_provider_rejected(settings, organization):
    google = FakeGoogle()
    use_fake(settings, google)
    try:
        (shipped,) = publish_events(
            organization,
            {
                "name": "shipped",
                "channel": "push",
                "fields": [{"name": "order", "type": "text"}],
                "message": {"title": "Shipped", "body": "Order {{ ctx.order }} is on its way"},
            },
        )
        google.answers.append(fcm_error(404, "UNREGISTERED", "Requested entity was not found."))
        dead = push(shipped, "token-dead")
        assert pipeline.process(dead.pk) == "deliveryFailed"
        google.answers.append(fcm_error(400, "INVALID_ARGUMENT", "Invalid data payload key"))
        refused = push(shipped, "token-alive")
        assert pipeline.process(refused.pk) == "deliveryFailed"
    finally:
        google.stop()
    assert codes(dead)[-1] == ("deliveryFailed", "providerRejected:404")  # the token quarantined
    assert codes(refused)[-1] == ("deliveryFailed", "providerRejected:400")  # the message's fault
