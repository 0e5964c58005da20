"""Processing one event, status by status, as a worker does it (the pipeline called directly)."""

from __future__ import annotations

import copy
import datetime as dt
import os
import signal

import pytest
from billiard.pool import SIG_SOFT_TIMEOUT, soft_timeout_sighandler
from celery.exceptions import SoftTimeLimitExceeded
from django.core import mail
from django.utils import timezone

from campaign.models import Quarantine
from events import claims, pipeline, publication, sweep
from events.models import Event
from events.publication import unpublish_configuration
from events.schema import validate_event
from events.services import ingest
from messages import services as message_services
from messages.models import Delivery, MessageVersion, TransactionalMessage
from tests.conftest import CART_EVENT, publish_events, seed_body
from tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db
FUTURE = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.000Z")


def accept(configuration, body) -> Event:
    event, _ = ingest(
        configuration=configuration, validated=validate_event(configuration.published_schema, body)
    )
    return event


def live_body(**overrides):
    return {**seed_body(scheduled=None, expiration=FUTURE), **overrides}


def history(event) -> list[str]:
    return [change.to_status for change in event.status_changes.all()]


def test_seed_example_becomes_an_email_saying_jack_and_the_product(cart_configuration):
    event = accept(cart_configuration, live_body())
    assert pipeline.process(event.pk) == "processed"
    event.refresh_from_db()
    assert event.status == "processed" and event.processed_at is not None
    assert history(event) == ["processing", "processed"]
    (sent,) = mail.outbox
    assert sent.to == ["test@example.com"]
    assert sent.subject == "Jack, your cart is waiting"
    assert "Jack" in sent.body and "Leather motorbike jacket" in sent.body
    html = sent.alternatives[0][0]
    assert "Leather motorbike jacket" in html
    delivery = event.deliveries.get()
    assert delivery.outcome == "sent" and delivery.provider_message_id == sent.extra_headers["Message-ID"]
    assert event.message_version == cart_configuration.message.live_version


def test_the_delivery_keeps_what_was_sent(cart_configuration):
    event = accept(cart_configuration, live_body())
    pipeline.process(event.pk)
    (sent,) = mail.outbox
    content = event.deliveries.get().content
    assert content["subject"] == sent.subject == "Jack, your cart is waiting"
    assert content["text"] == sent.body
    assert content["html"] == sent.alternatives[0][0]
    assert content["from"].endswith(f"<{sent.from_email.rsplit('<', 1)[-1].rstrip('>')}>")


def test_a_kept_part_is_bounded_by_the_render_cap(settings):
    from messages.channels import RenderedMessage

    settings.RENDER_MAX_OUTPUT_CHARS = 10
    kept = message_services.delivered_content(RenderedMessage(parts={"text": "x" * 50, "subject": "s"}))
    assert kept == {"text": "x" * 10, "subject": "s"}


def test_seed_example_with_its_past_expiration_becomes_too_old(cart_configuration):
    event = accept(cart_configuration, seed_body(scheduled=None))
    assert pipeline.process(event.pk) == "tooOld"
    assert mail.outbox == []


def test_a_second_process_of_the_same_event_sends_nothing(cart_configuration):
    event = accept(cart_configuration, live_body())
    assert pipeline.process(event.pk) == "processed"
    assert pipeline.process(event.pk) is None
    assert len(mail.outbox) == 1


def test_nothing_is_processed_before_scheduled(cart_configuration):
    later = (timezone.now() + dt.timedelta(hours=1)).isoformat()
    event = accept(cart_configuration, live_body(scheduled=later))
    assert pipeline.process(event.pk) is None
    assert Event.objects.get(pk=event.pk).status == "pending"
    assert sweep.recover()["enqueued"] == 0
    Event.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now(), scheduled_at=timezone.now())
    assert sweep.recover()["enqueued"] == 1
    assert pipeline.process(event.pk) == "processed"


def test_unpublished_event_type_fails_routing(cart_configuration):
    event = accept(cart_configuration, live_body())
    unpublish_configuration(configuration=cart_configuration)
    assert Event.objects.get(pk=event.pk).status == "routingFailed"
    assert pipeline.process(event.pk) is None
    assert mail.outbox == []


def test_a_message_in_draft_fails_routing(organization):
    configuration = publish_events(organization, {"name": "noMessage", "channel": "email", "fields": []})[0]
    TransactionalMessage.objects.filter(configuration=configuration).update(status="draft")
    event = accept(configuration, {"email": "a@example.com"})
    assert pipeline.process(event.pk) == "routingFailed"
    assert mail.outbox == []


def test_paused_message_keeps_events_and_resume_sends_them(cart_configuration):
    message = cart_configuration.message
    waiting = accept(cart_configuration, live_body())
    publication.pause_message(message=message)
    assert Event.objects.get(pk=waiting.pk).status == "paused"
    arriving = accept(cart_configuration, live_body())
    assert pipeline.process(arriving.pk) == "paused"
    expired = accept(cart_configuration, live_body())
    Event.objects.filter(pk=expired.pk).update(
        status="paused", expiration_at=timezone.now() - dt.timedelta(seconds=1)
    )
    assert mail.outbox == []
    publication.resume_message(message=message)
    assert Event.objects.get(pk=expired.pk).status == "tooOld"
    for event in (waiting, arriving):
        assert Event.objects.get(pk=event.pk).status == "pending"
        assert pipeline.process(event.pk) == "processed"
    assert len(mail.outbox) == 2


def test_resumed_events_use_the_content_live_at_resume(cart_configuration):
    message = cart_configuration.message
    event = accept(cart_configuration, live_body())
    message = publication.pause_message(message=message)
    message.subject = "New subject for {{ ctx.firstName }}"
    message.save()
    publication.publish_message(message=message)  # publishing a paused message resumes it
    assert pipeline.process(event.pk) == "processed"
    assert mail.outbox[0].subject == "New subject for Jack"


def test_a_draft_edit_never_leaks_into_sent_mail(cart_configuration):
    message = cart_configuration.message
    message.subject = "DRAFT ONLY"
    message.save()
    event = accept(cart_configuration, live_body())
    assert pipeline.process(event.pk) == "processed"
    assert mail.outbox[0].subject == "Jack, your cart is waiting"


def test_quarantined_address_is_ignored(cart_configuration, organization):
    Quarantine.objects.create(organization=organization, channel="email", address="test@example.com")
    event = accept(cart_configuration, live_body())
    assert pipeline.process(event.pk) == "ignored"
    assert mail.outbox == []


WELCOME = {
    "name": "welcome",
    "channel": "email",
    "targeting": "profile",
    "fields": [{"name": "email", "type": "email"}, {"name": "plan", "type": "text"}],
    "reconciliation": {"eventField": "email", "profileField": "email"},
    "message": {
        "subject": "Welcome {{ profile.firstName }}",
        "html": "<p>Plan {{ ctx.plan }}</p><a href='{{ unsubscribe_url }}'>Unsubscribe</a>",
        "text": "",
    },
}


def test_profile_event_goes_to_the_profile_with_unsubscribe_headers(organization, client):
    configuration = publish_events(organization, WELCOME)[0]
    profile = ProfileFactory(organization=organization, email="jane@example.com", first_name="Jane")
    event = accept(configuration, {"ctx": {"email": "JANE@example.com", "plan": "gold"}})
    assert pipeline.process(event.pk) == "processed"
    (sent,) = mail.outbox
    assert sent.to == ["Jane Doe <jane@example.com>"] and sent.subject == "Welcome Jane"
    assert "Plan gold" in sent.body  # text part derived from the HTML
    link = sent.extra_headers["List-Unsubscribe"].strip("<>")
    assert sent.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # One-click unsubscribe opts the profile out; its next event is ignored.
    path = link.split("localhost:8000", 1)[1]
    assert client.post(path, {"List-Unsubscribe": "One-Click"}).status_code == 200
    profile.refresh_from_db()
    assert profile.opted_out
    again = accept(configuration, {"ctx": {"email": "jane@example.com", "plan": "gold"}})
    assert pipeline.process(again.pk) == "ignored"
    assert client.post(path.split("?")[0][:-3] + "xyz/").status_code == 404


def test_profile_event_without_matching_profile_fails_targeting(organization):
    configuration = publish_events(organization, WELCOME)[0]
    ProfileFactory(organization__slug="acme", email="nobody@example.com")  # another organization's profile
    event = accept(configuration, {"ctx": {"email": "nobody@example.com", "plan": "gold"}})
    assert pipeline.process(event.pk) == "targetingFailed"


def test_blocklisted_profile_is_ignored(organization):
    configuration = publish_events(organization, WELCOME)[0]
    ProfileFactory(organization=organization, email="jane@example.com", blocklisted=True)
    event = accept(configuration, {"ctx": {"email": "jane@example.com", "plan": "gold"}})
    assert pipeline.process(event.pk) == "ignored"


def test_permanent_smtp_failure_quarantines_the_address(cart_configuration, smtp_email):
    event = accept(cart_configuration, live_body(email="reject-me@example.com"))
    assert pipeline.process(event.pk) == "deliveryFailed"
    assert Quarantine.objects.filter(address="reject-me@example.com").exists()
    assert event.deliveries.get().provider_response.startswith("550")
    again = accept(cart_configuration, live_body(email="reject-me@example.com"))
    assert pipeline.process(again.pk) == "ignored"


def test_temporary_smtp_failure_retries_later_then_fails_for_good(cart_configuration, smtp_email, settings):
    settings.EVENT_MAX_ATTEMPTS = 3
    event = accept(cart_configuration, live_body(email="tempfail@example.com"))
    for attempt in (1, 2):
        assert pipeline.process(event.pk) == "pending"
        event.refresh_from_db()
        assert event.attempts == attempt and event.next_attempt_at > timezone.now()
        assert "451" in event.last_error
        assert pipeline.process(event.pk) is None  # not before its retry time
        Event.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())
    assert pipeline.process(event.pk) == "deliveryFailed"
    assert event.deliveries.filter(outcome="temporaryFailure").count() == 3
    assert not Quarantine.objects.exists()


def test_retry_after_expiration_becomes_too_old(cart_configuration, smtp_email, settings):
    settings.EVENT_RETRY_DELAY_SECONDS = 3600
    soon = (timezone.now() + dt.timedelta(minutes=5)).isoformat()
    event = accept(
        cart_configuration, seed_body(scheduled=None, expiration=soon, email="tempfail@example.com")
    )
    assert pipeline.process(event.pk) == "tooOld"


def test_connection_refused_is_temporary(cart_configuration, settings):
    from messages.channels import backend_for
    from tests.smtp import free_port

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    backend_for.cache_clear()
    try:
        event = accept(cart_configuration, live_body())
        assert pipeline.process(event.pk) == "pending"
        assert "Connection" in Event.objects.get(pk=event.pk).last_error
    finally:
        backend_for.cache_clear()


def test_smtp_delivery_is_multipart_with_message_id(cart_configuration, smtp_email):
    events = [accept(cart_configuration, live_body(email=f"user{i}@example.com")) for i in range(3)]
    assert [pipeline.process(e.pk) for e in events] == ["processed"] * 3
    received = smtp_email.wait_for(3)
    assert len(received) == 3
    first = received[0]
    assert first.part("text/plain") and "Jack" in first.part("text/html")
    assert first.message["Message-ID"] == events[0].deliveries.get().provider_message_id


def test_ingest_stores_an_undispatched_pending_event_and_sends_nothing_to_the_broker(
    cart_configuration, django_capture_on_commit_callbacks, monkeypatch
):
    from events import selectors, tasks

    def no_broker(*args, **kwargs):
        raise AssertionError("ingest published to the broker")

    monkeypatch.setattr(tasks.process_events, "apply_async", no_broker)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        due = accept(cart_configuration, live_body())
        later = accept(cart_configuration, live_body(scheduled=FUTURE))
    assert callbacks == []  # nothing waits for the commit either: the dispatcher takes it from there
    due, later = Event.objects.get(pk=due.pk), Event.objects.get(pk=later.pk)
    assert (due.status, due.enqueued_at, later.enqueued_at) == ("pending", None, None)
    assert due.next_attempt_at <= timezone.now() and later.next_attempt_at == later.scheduled_at
    assert list(selectors.due_pending_events().filter(enqueued_at__isnull=True)) == [due]


def test_a_template_that_fails_at_render_time_fails_delivery(cart_configuration):
    from messages.models import MessageVersion

    version = cart_configuration.message.live_version
    MessageVersion.objects.filter(pk=version.pk).update(content={**version.content, "subject": "{{ 1 / 0 }}"})
    event = accept(cart_configuration, live_body())
    assert pipeline.process(event.pk) == "deliveryFailed"
    assert "rendered" in Event.objects.get(pk=event.pk).status_changes.last().reason


def test_sms_and_push_go_through_their_backends(organization, settings, tmp_path):
    settings.CHANNEL_OUTBOX_DIR = str(tmp_path)
    organization.sms_sender = "GEOMETRIXX"  # an SMS goes from the organization's SMS sender
    organization.save()
    sms, push = publish_events(
        organization,
        {
            "name": "otp",
            "channel": "sms",
            "fields": [{"name": "code", "type": "text"}],
            "message": {"text": "Your code: {{ ctx.code }}"},
        },
        {
            "name": "shipped",
            "channel": "push",
            "fields": [{"name": "order", "type": "text"}],
            "message": {"title": "Shipped", "body": "Order {{ ctx.order }} is on its way"},
        },
    )
    first = accept(sms, {"mobilePhone": "+33612345678", "ctx": {"code": "4242"}})
    second = accept(push, {"pushPlatform": "gcm", "registrationToken": "tok-1", "ctx": {"order": "A1"}})
    assert pipeline.process(first.pk) == "processed"
    assert pipeline.process(second.pk) == "processed"
    import json

    sms_file = json.loads(next((tmp_path / "sms").iterdir()).read_text())
    assert sms_file == {"to": "+33612345678", "from": "GEOMETRIXX", "text": "Your code: 4242"}
    push_file = json.loads(next((tmp_path / "push").iterdir()).read_text())
    assert push_file["message"]["token"] == "tok-1"
    assert push_file["message"]["notification"] == {"title": "Shipped", "body": "Order A1 is on its way"}


# --- Batched claims (the worker task) ------------------------------------------------------------


def test_a_task_also_drains_the_due_backlog_once_each_and_leaves_the_rest(cart_configuration):
    mine, *backlog = [accept(cart_configuration, live_body(email=f"b{n}@example.com")) for n in range(4)]
    later = accept(
        cart_configuration, live_body(scheduled=(timezone.now() + dt.timedelta(hours=1)).isoformat())
    )
    done = pipeline.process_batch([mine.pk])
    assert list(done)[0] == mine.pk  # its own event first
    assert set(done) == {mine.pk, *(event.pk for event in backlog)}
    assert set(done.values()) == {"processed"}
    assert sorted(m.to[0] for m in mail.outbox) == [f"b{n}@example.com" for n in range(4)]
    assert Event.objects.get(pk=later.pk).status == "pending"
    # The backlog's own tasks arrive later and find nothing left to send.
    assert all(pipeline.process_batch([event.pk]) == {} for event in backlog)
    assert len(mail.outbox) == 4
    assert all(history(event) == ["processing", "processed"] for event in backlog)


def test_a_batch_claims_at_most_its_limit_starting_with_its_own_event(cart_configuration):
    events = [accept(cart_configuration, live_body(email=f"c{n}@example.com")) for n in range(5)]
    done = pipeline.process_batch([events[3].pk], limit=2)
    assert list(done)[0] == events[3].pk and len(done) == 2
    assert Event.objects.filter(status="pending").count() == 3


def test_a_batch_skips_its_quarantined_addresses_and_sends_the_others(cart_configuration, organization):
    Quarantine.objects.create(organization=organization, channel="email", address="bounced@example.com")
    first = accept(cart_configuration, live_body(email="Bounced@Example.com"))
    second = accept(cart_configuration, live_body(email="fine@example.com"))
    done = pipeline.process_batch([first.pk])
    assert done == {first.pk: "ignored", second.pk: "processed"}
    assert [m.to for m in mail.outbox] == [["fine@example.com"]]


def test_an_address_a_batch_quarantines_is_not_sent_to_again_in_that_batch(cart_configuration, smtp_email):
    first = accept(cart_configuration, live_body(email="reject-me@example.com"))
    second = accept(cart_configuration, live_body(email="reject-me@example.com"))
    done = pipeline.process_batch([first.pk])
    assert done == {first.pk: "deliveryFailed", second.pk: "ignored"}
    assert Delivery.objects.filter(recipient="reject-me@example.com").count() == 1


def test_a_pause_during_a_batch_keeps_its_later_events(cart_configuration, monkeypatch):
    monkeypatch.setattr(pipeline, "BATCH_REFRESH_SECONDS", 0)
    first = accept(cart_configuration, live_body(email="one@example.com"))
    second = accept(cart_configuration, live_body(email="two@example.com"))
    real_send = message_services.send

    def send_then_pause(**kwargs):
        result = real_send(**kwargs)
        TransactionalMessage.objects.filter(pk=cart_configuration.message.pk).update(status="paused")
        return result

    monkeypatch.setattr(message_services, "send", send_then_pause)
    assert pipeline.process_batch([first.pk]) == {first.pk: "processed", second.pk: "paused"}
    assert [m.to for m in mail.outbox] == [["one@example.com"]]


def test_a_long_batch_renews_its_leases_and_drops_an_event_whose_lease_ran_out(
    cart_configuration, monkeypatch
):
    monkeypatch.setattr(claims, "lease_is_ample", lambda lease, now, send_seconds=None: False)
    first = accept(cart_configuration, live_body(email="one@example.com"))
    second = accept(cart_configuration, live_body(email="two@example.com"))
    third = accept(cart_configuration, live_body(email="three@example.com"))
    real_send = message_services.send

    def send_while_the_sweep_reclaims_the_second(**kwargs):
        Event.objects.filter(pk=second.pk).update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))
        return real_send(**kwargs)

    monkeypatch.setattr(message_services, "send", send_while_the_sweep_reclaims_the_second)
    done = pipeline.process_batch([first.pk])
    assert done == {first.pk: "processed", third.pk: "processed"}
    assert sorted(m.to[0] for m in mail.outbox) == ["one@example.com", "three@example.com"]
    assert Event.objects.get(pk=second.pk).status == "processing"  # the sweep's to reclaim, not sent


# --- What the benchmark's profile asked for, kept true ---------------------------------------------


def test_an_accepted_event_is_one_insert(cart_configuration):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    validated = validate_event(cart_configuration.published_schema, live_body())
    with CaptureQueriesContext(connection) as queries:
        ingest(configuration=cart_configuration, validated=validated)
    statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    assert statements.count("INSERT") == 1
    assert not {"UPDATE", "DELETE"} & set(statements)


def test_a_subject_rendered_with_cr_lf_goes_out_on_one_line(cart_configuration, smtp_email):
    injected = "Jack\r\nBcc: victim@example.com\x0bX"
    event = accept(cart_configuration, live_body(ctx={"firstName": injected}))
    assert pipeline.process(event.pk) == "processed"
    (received,) = smtp_email.wait_for(1)
    assert received.recipients == ["test@example.com"]  # no header was injected
    assert received.subject == "Jack  Bcc: victim@example.com X, your cart is waiting"
    event.refresh_from_db()
    assert event.last_error == "" and event.attempts == 1


def test_an_unexpected_error_keeps_event_data_out_of_last_error_and_logs(
    cart_configuration, monkeypatch, caplog
):
    secret = "Jack-the-customer"
    event = accept(cart_configuration, live_body(ctx={"firstName": secret}))

    def broken(**kwargs):
        raise ValueError(f"cannot handle {secret}")

    monkeypatch.setattr(message_services, "send", broken)
    assert pipeline.process(event.pk) == "pending"  # retried: it may be a passing bug
    event.refresh_from_db()
    assert "ValueError" in event.last_error and secret not in event.last_error
    assert secret not in caplog.text


def test_a_quarantined_events_log_history_and_last_error_hold_no_full_address(
    cart_configuration, organization, smtp_email, console
):
    rejected = accept(cart_configuration, live_body(email="reject-jane@example.com"))
    assert pipeline.process(rejected.pk) == "deliveryFailed"
    again = accept(cart_configuration, live_body(email="reject-jane@example.com"))
    assert pipeline.process(again.pk) == "ignored"
    texts = [console.getvalue()]
    for event in (rejected, again):
        event.refresh_from_db()
        texts += [event.last_error, *(change.reason for change in event.status_changes.all())]
    assert "r***@example.com is quarantined" in texts
    assert not any("reject-jane@" in text for text in texts)


# --- Bounded rendering and the task's time limits ------------------------------------------------

CHAINED_REPLACE = '{{ "aaaaaaaaaa"' + '|replace("a","aaaaaaaaaa")' * 9 + " }}"
NESTED_LOOPS = '{% for a in "x"*100000 %}{% for b in "x"*100000 %}{% endfor %}{% endfor %}'


def force_live_content(configuration, **parts) -> None:
    """Make a version live without the form's or the publication's checks, as if written around them."""
    message = configuration.message
    content = {**message.live_version.content, **parts}
    version = MessageVersion.objects.create(
        message=message, number=message.live_version.number + 1, content=content
    )
    TransactionalMessage.objects.filter(pk=message.pk).update(live_version=version)


def test_templates_beyond_the_bounds_fail_their_events_and_the_next_event_is_sent(organization):
    replacing, looping, normal = publish_events(
        organization,
        *({**copy.deepcopy(CART_EVENT), "name": name} for name in ("replacing", "looping", "normal")),
    )
    force_live_content(replacing, subject=CHAINED_REPLACE)
    force_live_content(looping, html=NESTED_LOOPS)
    events = [
        accept(configuration, live_body(email=f"{configuration.name}@example.com"))
        for configuration in (replacing, looping, normal)
    ]
    done = pipeline.process_batch([event.pk for event in events])
    assert list(done.values()) == ["deliveryFailed", "deliveryFailed", "processed"]
    assert [m.to for m in mail.outbox] == [["normal@example.com"]]
    first, second, third = (Event.objects.get(pk=event.pk) for event in events)
    assert first.last_error == (
        "the message could not be rendered: subject: the template built a value of 10,000,000 characters "
        "or items, beyond the limit of 1,000,000 (RENDER_MAX_OUTPUT_CHARS)"
    )
    assert second.last_error == (
        "the message could not be rendered: html: the template's loops exceeded 100,000 iterations "
        "(RENDER_MAX_LOOP_ITERATIONS)"
    )
    assert first.status_changes.last().reason == first.last_error
    assert (
        third.last_error == "" and first.attempts == second.attempts == 1
    )  # not retried: it fails every time


def test_a_template_past_the_render_deadline_fails_its_event_with_the_reason(cart_configuration, settings):
    settings.RENDER_MAX_LOOP_ITERATIONS = 10**12  # only the deadline is left to stop the loops
    settings.RENDER_TIMEOUT_SECONDS = 0.05
    force_live_content(cart_configuration, text=NESTED_LOOPS)
    event = accept(cart_configuration, live_body())
    assert pipeline.process(event.pk) == "deliveryFailed"
    event.refresh_from_db()
    assert event.last_error == (
        "the message could not be rendered: text: the template exceeded the render deadline of 0.05 s "
        "(RENDER_TIMEOUT_SECONDS)"
    )
    assert mail.outbox == []


def test_a_soft_time_limit_retries_the_event_in_hand_and_hands_back_the_rest(cart_configuration, monkeypatch):
    first, second, third = (
        accept(cart_configuration, live_body(email=f"t{n}@example.com")) for n in range(3)
    )
    real_compose = message_services.compose

    def out_of_time_once(**kwargs):
        monkeypatch.setattr(message_services, "compose", real_compose)
        raise SoftTimeLimitExceeded()  # as billiard's signal handler raises it, in the middle of a render

    monkeypatch.setattr(message_services, "compose", out_of_time_once)
    assert pipeline.process_batch([first.pk]) == {}  # the task returns: the worker goes on
    assert mail.outbox == []
    first, second, third = (Event.objects.get(pk=event.pk) for event in (first, second, third))
    assert first.status == "pending" and first.attempts == 1 and first.next_attempt_at > timezone.now()
    assert "ran out of time (EVENT_TASK_SOFT_TIME_LIMIT_SECONDS" in first.last_error
    for waiting in (second, third):  # back in the queue as before the claim, due now
        assert waiting.status == "pending" and waiting.attempts == 0 and waiting.lease_expires_at is None
        assert waiting.next_attempt_at <= timezone.now() and waiting.enqueued_at is None
        assert "not processed: the worker's task ran out of time" in waiting.status_changes.last().reason
    # The next task sends them; the retried one when its retry is due.
    assert pipeline.process_batch([second.pk]) == {second.pk: "processed", third.pk: "processed"}
    Event.objects.filter(pk=first.pk).update(next_attempt_at=timezone.now())
    assert pipeline.process_batch([first.pk]) == {first.pk: "processed"}
    assert sorted(m.to[0] for m in mail.outbox) == ["t0@example.com", "t1@example.com", "t2@example.com"]


def test_a_soft_time_limit_waits_until_a_message_sent_is_recorded(cart_configuration, monkeypatch):
    """The limit's signal arrives during the send: it strikes once the delivery is recorded, so a
    later attempt never sends that message again."""
    previous = signal.signal(SIG_SOFT_TIMEOUT, soft_timeout_sighandler)  # what billiard installs in a child
    first, second = (accept(cart_configuration, live_body(email=f"s{n}@example.com")) for n in range(2))
    real_send = message_services.send

    def send_as_the_limit_strikes(**kwargs):
        os.kill(os.getpid(), SIG_SOFT_TIMEOUT)
        return real_send(**kwargs)

    monkeypatch.setattr(message_services, "send", send_as_the_limit_strikes)
    try:
        assert pipeline.process_batch([first.pk]) == {}
    finally:
        signal.signal(SIG_SOFT_TIMEOUT, previous)
    first, second = Event.objects.get(pk=first.pk), Event.objects.get(pk=second.pk)
    assert first.status == "processed" and first.deliveries.get().outcome == "sent"
    assert [m.to for m in mail.outbox] == [["s0@example.com"]]
    assert second.status == "pending" and second.attempts == 0


# --- Sends in flight: several conversations at once, recorded in groups ----------------------------


@pytest.fixture
def recorder_closed():
    """The process's recorder thread keeps a connection to the test database (PostgreSQL, outside a
    transaction): closed after the test, so that the database can be emptied and dropped."""
    yield
    from django.db import connections

    from events import sending

    for _ in range(sending.RECORDERS):
        sending.record(connections.close_all).result()


def test_a_batch_keeps_several_sends_in_flight_never_more_than_its_window(
    cart_configuration, smtp_email, settings
):
    settings.EVENT_SENDS_IN_FLIGHT = 3
    smtp_email.data_seconds = 0.2
    events = [accept(cart_configuration, live_body(email=f"w{n}@example.com")) for n in range(9)]
    done = pipeline.process_batch([events[0].pk])
    assert done == {event.pk: "processed" for event in events}
    assert 2 <= smtp_email.most_in_data <= 3  # overlapping, within the window
    assert sorted(m.recipients[0] for m in smtp_email.messages) == sorted(e.email for e in events)
    assert all(history(event) == ["processing", "processed"] for event in events)


def test_two_sends_to_one_address_are_never_in_flight_together_and_keep_their_order(
    cart_configuration, smtp_email, settings
):
    settings.EVENT_SENDS_IN_FLIGHT = 4
    smtp_email.data_seconds = 0.1
    events = [
        accept(cart_configuration, live_body(email="same@example.com", ctx={"firstName": f"n{n}"}))
        for n in range(3)
    ]
    assert set(pipeline.process_batch([events[0].pk]).values()) == {"processed"}
    assert smtp_email.most_in_data == 1
    assert [m.subject for m in smtp_email.messages] == [f"n{n}, your cart is waiting" for n in range(3)]


@pytest.mark.django_db(transaction=True)
def test_records_written_beside_the_sends_all_land_with_their_history_and_delivery(
    cart_configuration, smtp_email, settings, recorder_closed
):
    """Outside a transaction on PostgreSQL the records go to the recorder thread, in groups."""
    settings.EVENT_SENDS_IN_FLIGHT = 4
    smtp_email.data_seconds = 0.05
    events = [accept(cart_configuration, live_body(email=f"r{n}@example.com")) for n in range(10)]
    assert pipeline.process_batch([events[0].pk]) == {event.pk: "processed" for event in events}
    for event in events:
        event.refresh_from_db()
        assert event.status == "processed" and history(event) == ["processing", "processed"]
        (delivery,) = event.deliveries.all()
        assert delivery.outcome == "sent" and delivery.recipient == event.email
        assert delivery.provider_message_id == smtp_email.to(event.email)[0].message["Message-ID"]


def test_a_soft_time_limit_during_concurrent_sends_records_every_message_that_went_out(
    cart_configuration, smtp_email, settings
):
    """The limit strikes as the first message is accepted: no send starts after it, the sends in
    flight are waited for and recorded, and the events not sent go back to the queue untried."""
    settings.EVENT_SENDS_IN_FLIGHT = 3
    smtp_email.data_seconds = 0.2
    events = [accept(cart_configuration, live_body(email=f"l{n}@example.com")) for n in range(8)]
    previous = signal.signal(SIG_SOFT_TIMEOUT, soft_timeout_sighandler)  # what billiard installs in a child
    smtp_email.on_data = lambda: os.kill(os.getpid(), SIG_SOFT_TIMEOUT)
    try:
        assert pipeline.process_batch([events[0].pk]) == {}
    finally:
        smtp_email.on_data = None
        signal.signal(SIG_SOFT_TIMEOUT, previous)
    accepted = {m.recipients[0] for m in smtp_email.messages}
    assert 1 <= len(accepted) <= 3
    for event in events:
        event.refresh_from_db()
        if event.email in accepted:
            assert event.status == "processed" and event.deliveries.get().outcome == "sent"
        else:
            assert (event.status, event.attempts, event.deliveries.count()) == ("pending", 0, 0)


def test_a_task_keeps_claiming_a_waiting_backlog_for_as_long_as_it_is_told(cart_configuration, settings):
    settings.EVENT_CLAIM_BATCH = 2
    events = [accept(cart_configuration, live_body(email=f"k{n}@example.com")) for n in range(5)]
    assert list(pipeline.process_batch([events[0].pk])) == [events[0].pk, events[1].pk]  # its claim only
    done = pipeline.process_batch([events[2].pk], keep_going_for=60)  # then the backlog, 2 at a time
    assert list(done) == [event.pk for event in events[2:]] and set(done.values()) == {"processed"}
    assert len(mail.outbox) == 5


def test_a_batch_reads_its_events_in_a_few_queries_whatever_their_number(cart_configuration, settings):
    """No event's column is read on its own (a deferred column would cost a query per event)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    events = [accept(cart_configuration, live_body(email=f"q{n}@example.com")) for n in range(6)]
    with CaptureQueriesContext(connection) as queries:
        assert len(pipeline.process_batch([events[0].pk])) == 6
    event_reads = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    single = [sql for sql in event_reads if '"events_event"."id" = ' in sql and "LIMIT" in sql]
    assert single == []


def test_templates_are_compiled_once_and_a_newly_published_version_is_what_renders(cart_configuration):
    """Compiled templates are kept by their text: a version's parts are compiled once per process,
    and a new version's changed part is another text, compiled at its first use."""
    from messages.rendering import compile_template

    message = cart_configuration.message
    compile_template.cache_clear()
    first = [accept(cart_configuration, live_body(email=f"v{n}@example.com")) for n in range(3)]
    pipeline.process_batch([first[0].pk])
    assert compile_template.cache_info().misses == 3  # subject, html, text: once for the three emails
    message.subject = "Version two for {{ ctx.firstName }}"
    message.save()
    publication.publish_message(message=message)
    compile_template.cache_clear()
    second = [accept(cart_configuration, live_body(email=f"u{n}@example.com")) for n in range(3)]
    pipeline.process_batch([second[0].pk])
    assert compile_template.cache_info().misses == 3
    assert [m.subject for m in mail.outbox] == ["Jack, your cart is waiting"] * 3 + [
        "Version two for Jack"
    ] * 3
