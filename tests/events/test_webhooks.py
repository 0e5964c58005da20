"""Status webhooks (events.webhooks): signing, the retry schedule, the outbox scanner, delivery
at least once with one id, disabling after a run of failures, replay."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from django.utils import timezone

from events import webhooks
from events.models import Event, WebhookAttempt, WebhookEndpoint, WebhookNotification
from events.transitions import transition
from tests.factories import ConfigurationFactory
from tests.webhook_receiver import Receiver, verify

pytestmark = pytest.mark.django_db
S = Event.Status
State = WebhookNotification.State
CODE_OF = {S.PROCESSED: "sent", S.DELIVERY_FAILED: "providerRejected:5.1.1"}


@pytest.fixture(autouse=True)
def _loopback_allowed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_SENDS_IN_FLIGHT = 2


def endpoint_for(organization, url: str, **flags) -> tuple[WebhookEndpoint, str]:
    endpoint = WebhookEndpoint(organization=organization, url=url, **flags)
    secret = webhooks.create_endpoint(endpoint=endpoint)
    return endpoint, secret


def final_event(configuration, status: str = S.PROCESSED) -> Event:
    event = Event.objects.create(
        organization_id=configuration.organization_id,
        configuration=configuration,
        email="jack@example.com",
        next_attempt_at=timezone.now(),
    )
    assert transition(event.pk, to=S.PROCESSING, sources=[S.PENDING])
    assert transition(event.pk, to=status, sources=[S.PROCESSING], reason="done", code=CODE_OF[status])
    return Event.objects.get(pk=event.pk)


# --- signing ------------------------------------------------------------------------------------


def test_the_signature_is_the_standard_webhooks_one():
    # The example of the Standard Webhooks specification (its test vectors).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    signed = webhooks.signature(
        secret=secret, webhook_id="msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp=1614265330, body=body
    )
    assert signed == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_new_secret_is_whsec_and_24_random_bytes():
    secret = webhooks.new_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 24
    assert webhooks.new_secret() != secret


def test_the_secret_is_stored_encrypted_and_read_back(organization):
    endpoint, secret = endpoint_for(organization, "http://127.0.0.1:9/hooks")
    stored = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert secret not in stored.secret_encrypted and secret[6:] not in stored.secret_encrypted
    assert webhooks.secret_of(stored) == secret


def test_the_secret_cannot_be_read_with_another_key(organization, settings):
    endpoint, _ = endpoint_for(organization, "http://127.0.0.1:9/hooks")
    settings.ENCRYPTION_KEYS = [base64.urlsafe_b64encode(b"k" * 32).decode()]
    from campaign.encryption import InvalidToken

    with pytest.raises(InvalidToken):
        webhooks.secret_of(WebhookEndpoint.objects.get(pk=endpoint.pk))


# --- the retry schedule ---------------------------------------------------------------------------


def test_retries_double_and_end_a_day_after_the_first_attempt():
    delays = webhooks.retry_delays(first=30, window=24 * 3600)
    assert delays[:4] == [30, 60, 120, 240]
    assert all(later == 2 * earlier for earlier, later in zip(delays[:-2], delays[1:-1], strict=True))
    assert sum(delays) == 24 * 3600 and delays[-1] <= 2 * delays[-2]


def test_the_schedule_is_a_setting(settings):
    settings.WEBHOOK_RETRY_FIRST_SECONDS, settings.WEBHOOK_RETRY_WINDOW_SECONDS = 0.5, 3.5
    assert webhooks.retry_delays() == [0.5, 1.0, 2.0]


# --- the outbox -----------------------------------------------------------------------------------


def test_a_final_status_recorded_with_no_webhook_code_running_gets_its_notification(organization):
    """The scanner reads the events table: whatever became of the worker that recorded it."""
    endpoint, _ = endpoint_for(organization, "http://127.0.0.1:9/hooks")
    configuration = ConfigurationFactory(organization=organization, name="cartAbandonment")
    processed, failed = final_event(configuration), final_event(configuration, S.DELIVERY_FAILED)
    Event.objects.create(  # not final: nothing
        organization=organization, configuration=configuration, next_attempt_at=timezone.now()
    )
    assert webhooks.store_notifications() == 2
    stored = {n.source_id: n for n in WebhookNotification.objects.filter(endpoint=endpoint)}
    assert set(stored) == {processed.pk, failed.pk}
    assert stored[processed.pk].payload["type"] == "event.status"
    assert stored[processed.pk].payload["data"] == {
        "eventId": "EVTcartAbandonment",
        "PKey": processed.pkey,
        "status": "processed",
        "reasonCode": "sent",
    }
    assert stored[failed.pk].payload["data"]["status"] == "deliveryFailed"
    assert stored[failed.pk].payload["data"]["reasonCode"] == "providerRejected:5.1.1"


def test_scanning_again_stores_nothing_twice_and_keeps_the_id(organization):
    endpoint_for(organization, "http://127.0.0.1:9/hooks")
    final_event(ConfigurationFactory(organization=organization))
    webhooks.store_notifications()
    first = WebhookNotification.objects.get().webhook_id
    later = timezone.now() + dt.timedelta(seconds=5)  # within the grace: the event is read again
    assert webhooks.store_notifications(now=later) == 0
    assert WebhookNotification.objects.get().webhook_id == first


def test_only_the_kinds_an_endpoint_wants_and_only_its_organizations(organization, other_organization):
    wants, _ = endpoint_for(organization, "http://127.0.0.1:9/a")
    opens_only, _ = endpoint_for(organization, "http://127.0.0.1:9/b", final_statuses=False, opens=True)
    others, _ = endpoint_for(other_organization, "http://127.0.0.1:9/c")
    final_event(ConfigurationFactory(organization=organization))
    webhooks.store_notifications()
    assert list(WebhookNotification.objects.values_list("endpoint_id", flat=True)) == [wants.pk]


def test_a_disabled_endpoint_gets_nothing_stored(organization):
    endpoint, _ = endpoint_for(organization, "http://127.0.0.1:9/hooks")
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False)
    final_event(ConfigurationFactory(organization=organization))
    assert webhooks.store_notifications() == 0


def test_what_happened_before_the_endpoint_existed_is_not_sent(organization):
    event = final_event(ConfigurationFactory(organization=organization))
    endpoint_for(organization, "http://127.0.0.1:9/hooks")
    Event.objects.filter(pk=event.pk).update(updated_at=timezone.now() - dt.timedelta(seconds=1))
    assert webhooks.store_notifications() == 0


# --- sending --------------------------------------------------------------------------------------


def test_the_receiver_gets_a_signed_notification_it_verifies(organization):
    with Receiver() as receiver:
        endpoint, secret = endpoint_for(organization, receiver.url)
        event = final_event(ConfigurationFactory(organization=organization, name="cart"))
        totals = webhooks.run()
        assert totals["delivered"] == 1
        [got] = receiver.received
    assert verify(secret=secret, headers=got.headers, body=got.body)
    assert not verify(secret=webhooks.new_secret(), headers=got.headers, body=got.body)
    assert got.payload["data"] == {
        "eventId": "EVTcart",
        "PKey": event.pkey,
        "status": "processed",
        "reasonCode": "sent",
    }
    notification = WebhookNotification.objects.get()
    assert got.webhook_id == notification.webhook_id and notification.state == State.DELIVERED
    [attempt] = WebhookAttempt.objects.filter(endpoint=endpoint)
    assert attempt.status_code == 204 and attempt.error == ""


def test_a_failure_is_retried_later_with_the_same_id_and_body(organization, settings):
    settings.WEBHOOK_RETRY_FIRST_SECONDS = 60
    with Receiver() as receiver:
        receiver.status = 503
        endpoint_for(organization, receiver.url)
        final_event(ConfigurationFactory(organization=organization))
        webhooks.run()
        notification = WebhookNotification.objects.get()
        assert notification.state == State.PENDING and notification.attempts == 1
        assert notification.next_attempt_at > timezone.now() + dt.timedelta(seconds=50)
        assert webhooks.deliver_due()["claimed"] == 0  # not due yet
        receiver.status = 200
        webhooks.deliver_due(now=notification.next_attempt_at)
        first, second = receiver.received
    assert first.webhook_id == second.webhook_id and first.body == second.body
    assert WebhookNotification.objects.get().state == State.DELIVERED
    assert [a.status_code for a in WebhookAttempt.objects.order_by("started_at", "id")] == [503, 200]


def test_a_send_whose_outcome_was_not_recorded_goes_again_with_its_id(organization, settings):
    """A sender that died after its POST: the claim runs out, the same notification goes again."""
    settings.WEBHOOK_LEASE_SECONDS = 60
    with Receiver() as receiver:
        endpoint_for(organization, receiver.url)
        final_event(ConfigurationFactory(organization=organization))
        webhooks.store_notifications()
        claimed, lease = webhooks.claim_due(now=timezone.now(), limit=10)
        assert len(claimed) == 1  # ... and the process dies before sending or recording
        assert webhooks.deliver_due()["claimed"] == 0  # claimed: nobody else sends it meanwhile
        webhooks.deliver_due(now=lease)
        [got] = receiver.received
    assert got.webhook_id == WebhookNotification.objects.get().webhook_id
    assert WebhookNotification.objects.get().state == State.DELIVERED


def test_retries_spent_make_the_notification_failed(organization, settings):
    settings.WEBHOOK_RETRY_FIRST_SECONDS, settings.WEBHOOK_RETRY_WINDOW_SECONDS = 1, 3  # 1, 2
    endpoint_for(organization, "http://127.0.0.1:9/closed")
    final_event(ConfigurationFactory(organization=organization))
    webhooks.store_notifications()
    for _ in range(3):
        webhooks.deliver_due(now=timezone.now() + dt.timedelta(hours=1))
    notification = WebhookNotification.objects.get()
    assert notification.state == State.FAILED and notification.attempts == 3
    assert WebhookAttempt.objects.count() == 3


def test_an_endpoint_is_disabled_after_a_run_of_failures_and_a_success_resets_the_run(organization, settings):
    settings.WEBHOOK_DISABLE_AFTER_FAILURES = 3
    settings.WEBHOOK_RETRY_FIRST_SECONDS = 1
    with Receiver() as receiver:
        endpoint, _ = endpoint_for(organization, receiver.url)
        configuration = ConfigurationFactory(organization=organization)
        receiver.status = 500
        final_event(configuration), final_event(configuration)
        webhooks.run()
        assert WebhookEndpoint.objects.get(pk=endpoint.pk).failures_in_a_row == 2
        receiver.status = 200
        final_event(configuration)
        webhooks.run(now=timezone.now() + dt.timedelta(seconds=2))
        assert WebhookEndpoint.objects.get(pk=endpoint.pk).failures_in_a_row == 0
        receiver.status = 500
        for _ in range(3):
            final_event(configuration)
        webhooks.run(now=timezone.now() + dt.timedelta(seconds=4))
        endpoint.refresh_from_db()
        assert not endpoint.enabled and "3 failed attempts in a row" in endpoint.disabled_reason
        assert webhooks.endpoints_disabled(organization) == [endpoint]
        sent = len(receiver.received)
        final_event(configuration)
        webhooks.run(now=timezone.now() + dt.timedelta(hours=1))
        assert len(receiver.received) == sent  # disabled: nothing goes
        receiver.status = 200
        webhooks.enable(endpoint=endpoint)
        webhooks.run(now=timezone.now() + dt.timedelta(hours=1))
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.failures_in_a_row == 0
    assert not WebhookNotification.objects.filter(state=State.PENDING).exists()


def test_replay_sends_a_delivered_notification_again_with_its_id(organization):
    with Receiver() as receiver:
        endpoint_for(organization, receiver.url)
        final_event(ConfigurationFactory(organization=organization))
        webhooks.run()
        notification = WebhookNotification.objects.get()
        webhooks.replay(notification=notification)
        webhooks.run()
        first, again = receiver.received
    assert first.webhook_id == again.webhook_id == notification.webhook_id
    assert WebhookAttempt.objects.filter(notification=notification).count() == 2


def test_a_body_over_the_bound_is_not_sent(organization, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 20
    with Receiver() as receiver:
        endpoint_for(organization, receiver.url)
        final_event(ConfigurationFactory(organization=organization))
        webhooks.run()
        assert receiver.received == []
    assert "body over 20 bytes" in WebhookAttempt.objects.get().error


def test_the_payload_is_the_stored_one_byte_for_byte(organization):
    with Receiver() as receiver:
        endpoint_for(organization, receiver.url)
        final_event(ConfigurationFactory(organization=organization))
        webhooks.run()
        [got] = receiver.received
    assert json.loads(got.body) == WebhookNotification.objects.get().payload


# --- the other kinds, from their sources in the product ------------------------------------------


def kinds_stored() -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for notification in WebhookNotification.objects.order_by("id"):
        found.setdefault(notification.kind, []).append(notification.payload["data"])
    return found


def test_a_hard_bounce_is_notified_from_its_delivery(cart_configuration, organization, smtp_email):
    from events import pipeline
    from tests.events.test_rollups import accept

    endpoint_for(organization, "http://127.0.0.1:9/hooks", final_statuses=False, bounces=True)
    bounced = accept(cart_configuration, email="reject-me@example.com")
    assert pipeline.process(bounced.pk) == "deliveryFailed"
    pipeline.process(accept(cart_configuration, email="fine@example.com").pk)
    webhooks.store_notifications()
    [bounce] = kinds_stored()["message.bounced"]
    assert bounce["PKey"] == bounced.pkey and bounce["bounceType"] == "hard" and bounce["channel"] == "email"
    assert bounce["reason"] == "550 5.1.1"  # the server's codes, not its text (it names the address)
    assert list(kinds_stored()) == ["message.bounced"]


def test_a_status_notification_carries_the_code_of_the_move_it_reports(
    cart_configuration, organization, smtp_email, settings
):
    """The code of the move to the final status, not of an earlier one (a retry, a claim)."""
    from campaign.models import Quarantine
    from events import pipeline
    from tests.events.test_rollups import accept

    settings.EVENT_RETRY_DELAY_SECONDS = 1
    endpoint_for(organization, "http://127.0.0.1:9/hooks")
    Quarantine.objects.create(organization=organization, channel="email", address="blocked@example.com")
    ignored = accept(cart_configuration, email="blocked@example.com")
    retried = accept(cart_configuration, email="flaky-webhook@example.com")
    assert pipeline.process(ignored.pk) == "ignored"
    assert pipeline.process(retried.pk) == "pending"
    Event.objects.filter(pk=retried.pk).update(next_attempt_at=timezone.now())
    assert pipeline.process(retried.pk) == "processed"
    webhooks.store_notifications()
    codes = {data["PKey"]: (data["status"], data["reasonCode"]) for data in kinds_stored()["event.status"]}
    assert codes == {ignored.pkey: ("ignored", "quarantined"), retried.pkey: ("processed", "sent")}


def test_opens_and_clicks_are_notified_from_the_tracking_hits(organization, smtp_email, client, settings):
    import copy

    from tests.conftest import publish_events
    from tests.messages.test_tracking import (
        BROWSER,
        LINKS_EVENT,
        PUBLIC,
        pixel_of,
        send_one,
        sent_a_while_ago,
        tracked_links,
    )

    settings.PUBLIC_URL = PUBLIC + "/"
    endpoint_for(organization, "http://127.0.0.1:9/hooks", final_statuses=False, opens=True, clicks=True)
    configuration = publish_events(organization, copy.deepcopy(LINKS_EVENT))[0]
    event, html = send_one(configuration, smtp_email)
    sent_a_while_ago(event)
    assert client.get(pixel_of(html), HTTP_USER_AGENT=BROWSER).status_code == 200
    assert client.get(tracked_links(html)[0], HTTP_USER_AGENT=BROWSER).status_code == 302
    assert client.get(pixel_of(html), HTTP_USER_AGENT="").status_code == 200  # no browser: automated
    webhooks.store_notifications()
    stored = kinds_stored()
    assert [d["PKey"] for d in stored["message.opened"]] == [event.pkey]
    [click] = stored["message.clicked"]
    assert click["PKey"] == event.pkey and click["url"] == "https://shop.example.com/cart?item=1&ref=mail"


def test_an_unsubscribe_through_the_link_is_notified(organization, client):
    from django.core import mail

    from events import pipeline
    from tests.conftest import publish_events
    from tests.events.test_pipeline import WELCOME
    from tests.events.test_rollups import accept
    from tests.factories import ProfileFactory

    endpoint_for(organization, "http://127.0.0.1:9/hooks", final_statuses=False, unsubscribes=True)
    configuration = publish_events(organization, WELCOME)[0]
    ProfileFactory(organization=organization, email="jane@example.com")
    event = accept(configuration, ctx={"email": "jane@example.com", "plan": "gold"})
    assert pipeline.process(event.pk) == "processed"
    link = mail.outbox[0].extra_headers["List-Unsubscribe"].strip("<>").split("localhost:8000", 1)[1]
    assert client.post(link).status_code == 200
    webhooks.store_notifications()
    assert kinds_stored() == {
        "recipient.unsubscribed": [{"eventId": configuration.event_id, "PKey": event.pkey}]
    }


def test_a_bounces_reason_keeps_the_codes_and_drops_the_address():
    answer = "550 5.1.1 <jane.doe@example.com>: Recipient address rejected"
    assert webhooks._codes(answer) == "550 5.1.1"
    assert webhooks._codes("connection lost") == ""


def test_old_notifications_are_purged_with_their_attempts_but_not_pending_ones(organization, settings):
    settings.WEBHOOK_RETENTION_DAYS = 30
    endpoint, _ = endpoint_for(organization, "http://127.0.0.1:9/hooks")
    now = timezone.now()
    made = {}
    for n, state in enumerate(["delivered", "failed", "pending"]):
        made[state] = WebhookNotification.objects.create(
            endpoint=endpoint,
            kind="event.status",
            source_id=n,
            webhook_id=f"msg_{n}",
            payload={},
            state=state,
            next_attempt_at=now + dt.timedelta(days=1),
        )
        WebhookAttempt.objects.create(notification=made[state], endpoint=endpoint, started_at=now, error="x")
    WebhookNotification.objects.update(created_at=now - dt.timedelta(days=31))
    recent = WebhookNotification.objects.create(
        endpoint=endpoint,
        kind="event.status",
        source_id=9,
        webhook_id="msg_9",
        payload={},
        state="delivered",
        next_attempt_at=now,
    )
    assert webhooks.purge(now=now) == 2
    assert set(WebhookNotification.objects.values_list("pk", flat=True)) == {made["pending"].pk, recent.pk}
    assert WebhookAttempt.objects.count() == 1
    settings.WEBHOOK_RETENTION_DAYS = 0
    WebhookNotification.objects.update(state="delivered")
    assert webhooks.purge(now=now) == 0


def test_a_key_rotation_reencrypts_every_secret_under_the_new_key(organization, settings):
    from io import StringIO

    from cryptography.fernet import Fernet
    from django.core.management import call_command

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [old]
    endpoint, secret = endpoint_for(organization, "http://127.0.0.1:9/hooks")
    settings.ENCRYPTION_KEYS = [new, old]
    out = StringIO()
    call_command("reencrypt_webhook_secrets", stdout=out)
    assert out.getvalue() == "1 webhook secret(s) encrypted with the first key\n"
    settings.ENCRYPTION_KEYS = [new]  # the old key dropped
    assert webhooks.secret_of(WebhookEndpoint.objects.get(pk=endpoint.pk)) == secret


def test_a_rotation_without_the_old_key_is_one_line_and_exit_code_2(organization, settings):
    from cryptography.fernet import Fernet
    from django.core.management import CommandError, call_command

    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    endpoint, _ = endpoint_for(organization, "http://127.0.0.1:9/hooks")
    before = WebhookEndpoint.objects.get(pk=endpoint.pk).secret_encrypted
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CommandError, match="keep the old key") as raised:
        call_command("reencrypt_webhook_secrets")
    assert raised.value.returncode == 2 and "\n" not in str(raised.value)
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret_encrypted == before  # nothing written
