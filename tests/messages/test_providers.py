"""Several providers per channel (messages.providers): the shared rate limit, the cool-down of a
failing provider, and the failover of email between two SMTP servers on loopback."""

from __future__ import annotations

import datetime as dt
import smtplib
import threading
import time

import pytest
from django.utils import timezone

from events import pipeline
from messages import providers
from messages.channels import Recipient, RenderedMessage, SendResult, backend_for
from messages.models import Delivery
from tests.conftest import seed_body
from tests.events.test_pipeline import FUTURE, accept
from tests.smtp import SmtpServer, free_port


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# --- the rate limit ----------------------------------------------------------------------------


def test_no_slot_beyond_the_limit_across_two_connections(providers_redis):
    """Two clients (two connections, as two worker processes would have) taking slots as fast as
    they can: no second holds more than the limit's slots."""
    limit, granted, lock = 10, [], threading.Lock()
    states = [providers.RedisState(providers_redis), providers.RedisState(providers_redis)]
    stop = time.monotonic() + 2.5

    def take(state: providers.RedisState) -> None:
        while time.monotonic() < stop:
            wait = state.take_slot("email:test", limit, 1_000_000)
            if wait == 0:
                with lock:
                    granted.append(time.monotonic())
            else:
                time.sleep(min(wait, 0.01))

    threads = [threading.Thread(target=take, args=(state,)) for state in states for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    granted.sort()
    assert len(granted) > limit
    # The (limit+1)th slot after any slot comes a second later (less a margin for the time between
    # Redis granting a slot and this client noting it).
    gaps = [granted[i + limit] - granted[i] for i in range(len(granted) - limit)]
    assert min(gaps) > 0.8
    assert len(granted) <= limit * 3  # 2.5 s: at most three windows' worth


def test_a_send_over_the_limit_waits_for_its_slot(providers_redis):
    other = providers.RedisState(providers_redis)
    for _ in range(3):
        assert other.take_slot("email:p", 3, 1_000_000) == 0
    slept: list[float] = []
    assert providers.wait_for_slot("email:p", 3, sleep=lambda s: slept.append(s) or time.sleep(s))
    assert slept and 0 < slept[0] <= 1.0


def test_a_wait_beyond_the_claims_deadline_is_refused(providers_redis):
    for _ in range(2):
        assert providers.wait_for_slot("email:p", 2)
    assert not providers.wait_for_slot("email:p", 2, deadline=time.monotonic() + 0.01)


def test_without_redis_the_limit_is_kept_per_process(settings):
    settings.PROVIDERS_REDIS_URL = ""
    settings.CELERY_BROKER_URL = "filesystem://localhost/"
    providers.forget_state()
    try:
        state = providers.state()
        assert isinstance(state, providers.LocalState)
        assert [state.take_slot("k", 2, 1_000_000) == 0 for _ in range(3)] == [True, True, False]
    finally:
        providers.forget_state()


@pytest.mark.parametrize(
    "entry, problem",
    [
        ({"backend": "x"}, "needs a name"),
        ({"name": "x" * 65}, "needs a name"),
        ({"name": "a", "rate_limit": -1}, "rate_limit"),
        ({"name": "a", "rate_limit": 100_001}, "rate_limit"),
        ({"name": "a", "rate_limit": "20"}, "rate_limit"),
    ],
)
def test_a_wrong_provider_setting_is_named(settings, entry, problem):
    settings.EMAIL_PROVIDERS = [entry]
    with pytest.raises(ValueError, match=problem):
        providers.configured("email")


def test_two_providers_of_one_name_are_refused(settings):
    settings.EMAIL_PROVIDERS = [{"name": "a"}, {"name": "a"}]
    with pytest.raises(ValueError, match="used twice"):
        providers.configured("email")


# --- the cool-down -----------------------------------------------------------------------------


@pytest.mark.parametrize("shared", ["redis", "memory"])
def test_n_failures_in_a_row_set_a_provider_aside_for_the_cool_down(request, settings, shared):
    if shared == "redis":
        request.getfixturevalue("providers_redis")
    else:
        settings.PROVIDERS_REDIS_URL, settings.CELERY_BROKER_URL = "", "filesystem://localhost/"
        providers.forget_state()
    state = providers.state()
    assert not state.failed("email:a", 3, 300)
    assert not state.failed("email:a", 3, 300)
    state.succeeded("email:a")  # a success in between: the count starts again
    assert not state.failed("email:a", 3, 300)
    assert not state.failed("email:a", 3, 300)
    assert not state.set_aside("email:a")
    assert state.failed("email:a", 3, 300)
    assert state.set_aside("email:a") and not state.set_aside("email:b")
    assert wait_until(lambda: not state.set_aside("email:a"), timeout=5)
    providers.forget_state()


class _Failing:
    def __init__(self, answer: SendResult, max_send_seconds: float = 1.0) -> None:
        self.answer, self.calls = answer, 0
        self.max_send_seconds = max_send_seconds

    def send(self, rendered: RenderedMessage, recipient: Recipient) -> SendResult:
        self.calls += 1
        return self.answer


def test_a_recipients_failure_is_not_the_providers_and_tries_no_other(providers_redis, settings):
    settings.PROVIDER_FAILURES_BEFORE_COOLDOWN = 1
    refused = _Failing(SendResult("permanentFailure", provider_response="550 no such user"))
    other = _Failing(SendResult("sent"))
    backend = providers.FailoverBackend(
        "email", [providers.Provider("a", refused), providers.Provider("b", other)]
    )
    result = backend.send(RenderedMessage(parts={}), Recipient("x@example.com"))
    assert result.outcome == "permanentFailure" and result.provider == "a"
    assert other.calls == 0 and not providers.state().set_aside("email:a")


def test_every_provider_set_aside_still_tries_the_first(providers_redis, settings):
    settings.PROVIDER_FAILURES_BEFORE_COOLDOWN = 1
    down = SendResult("temporaryFailure", provider_response="ConnectionRefusedError", provider_fault=True)
    first, second = _Failing(down), _Failing(down)
    backend = providers.FailoverBackend(
        "email", [providers.Provider("a", first), providers.Provider("b", second)]
    )
    result = backend.send(RenderedMessage(parts={}), Recipient("x@example.com"))
    assert [a["provider"] for a in result.attempts] == ["a", "b"] and result.outcome == "temporaryFailure"
    result = backend.send(RenderedMessage(parts={}), Recipient("x@example.com"))
    assert [a["provider"] for a in result.attempts] == ["a"]


def test_a_fault_with_too_little_of_the_claim_left_tries_no_slower_provider(providers_redis, settings):
    """A failover that would start a send the claim's lease may not cover stops: the fault stands
    (retried later) and the next provider is not tried."""
    settings.PROVIDER_FAILURES_BEFORE_COOLDOWN = 5
    down = SendResult("temporaryFailure", provider_response="refused", provider_fault=True)
    first, second = _Failing(down), _Failing(SendResult("sent"), max_send_seconds=40)
    backend = providers.FailoverBackend(
        "email", [providers.Provider("a", first), providers.Provider("b", second)]
    )
    with providers.send_deadline(time.monotonic() + 20):  # 20 s of the claim left: b needs 40
        result = backend.send(RenderedMessage(parts={}), Recipient("x@example.com"))
    assert result.outcome == "temporaryFailure" and [a["provider"] for a in result.attempts] == ["a"]
    assert second.calls == 0 and not result.lease_too_short
    with providers.send_deadline(time.monotonic() + 50):
        result = backend.send(RenderedMessage(parts={}), Recipient("x@example.com"))
    assert result.sent and [a["provider"] for a in result.attempts] == ["a", "b"]


def test_a_provider_whose_send_could_outlive_the_claim_is_not_tried(providers_redis, settings):
    """Before the first attempt too: a provider whose longest send ends after the claim's lease is
    not tried, nor is the next one in its place (the preferred provider, its sender and its cost,
    waits): nothing is sent and the event waits for a new lease."""
    slow, quick = _Failing(SendResult("sent"), max_send_seconds=45), _Failing(SendResult("sent"))
    backend = providers.FailoverBackend(
        "email", [providers.Provider("slow", slow), providers.Provider("quick", quick)]
    )
    assert backend.max_send_seconds == 45
    with providers.send_deadline(time.monotonic() + 30):
        result = backend.send(RenderedMessage(parts={}), Recipient("x@example.com"))
    assert result.lease_too_short and not result.sent and result.provider == "slow"
    assert (slow.calls, quick.calls) == (0, 0)
    assert "slow: one send may take up to 45 s, more than the" in result.provider_response
    reversed_order = providers.FailoverBackend(
        "email", [providers.Provider("quick", quick), providers.Provider("slow", slow)]
    )
    with providers.send_deadline(time.monotonic() + 0.5):  # not even the quick one fits
        result = reversed_order.send(RenderedMessage(parts={}), Recipient("x@example.com"))
    assert result.lease_too_short and not result.sent and (slow.calls, quick.calls) == (0, 0)
    assert "more than the 0 s left of the claim's lease" in result.provider_response
    with providers.send_deadline(time.monotonic() + 50):
        result = backend.send(RenderedMessage(parts={}), Recipient("x@example.com"))
    assert result.sent and result.provider == "slow"


def test_an_unknown_outcome_is_not_sent_again_through_the_next_provider(providers_redis, settings):
    """The request went out and its answer was lost: the first provider may have sent the message,
    so the next one is not tried now; the fault counts toward the first one's cool-down."""
    settings.PROVIDER_FAILURES_BEFORE_COOLDOWN = 1
    lost = SendResult(
        "temporaryFailure", provider_response="ReadTimeout", provider_fault=True, outcome_unknown=True
    )
    first, second = _Failing(lost), _Failing(SendResult("sent"))
    backend = providers.FailoverBackend(
        "email", [providers.Provider("a", first), providers.Provider("b", second)]
    )
    result = backend.send(RenderedMessage(parts={}), Recipient("x@example.com"))
    assert result.outcome == "temporaryFailure" and result.outcome_unknown and second.calls == 0
    assert providers.state().set_aside("email:a")  # the retry goes through the order again: b
    result = backend.send(RenderedMessage(parts={}), Recipient("x@example.com"))
    assert result.sent and result.provider == "b"


# --- failover of email between two SMTP servers ------------------------------------------------


@pytest.mark.django_db
def test_email_fails_over_to_the_second_server_and_back_after_the_cool_down(
    cart_configuration, settings, providers_redis
):
    first, second = SmtpServer(), SmtpServer()  # the first not started: it refuses connections
    settings.EMAIL_PROVIDERS = [
        {"name": "first", "options": {"host": "127.0.0.1", "port": first.port}},
        {"name": "second", "options": {"host": "127.0.0.1", "port": second.port}},
    ]
    settings.PROVIDER_FAILURES_BEFORE_COOLDOWN = 2
    settings.PROVIDER_COOLDOWN_SECONDS = 1.0
    backend_for.cache_clear()
    body = {**seed_body(scheduled=None, expiration=FUTURE)}
    with second:
        events = [accept(cart_configuration, {**body, "email": f"user{i}@example.com"}) for i in range(3)]
        assert [pipeline.process(e.pk) for e in events] == ["processed"] * 3
        assert len(second.mailbox.wait_for(3)) == 3
        deliveries = [Delivery.objects.get(event_link__event=e) for e in events]
        assert [d.provider for d in deliveries] == ["second"] * 3
        # Two refusals in a row set the first aside: the third email did not try it.
        assert [[a["provider"] for a in d.attempts] for d in deliveries] == [
            ["first", "second"],
            ["first", "second"],
            ["second"],
        ]
        assert deliveries[0].attempts[0]["outcome"] == "temporaryFailure"
        assert "Connection" in deliveries[0].attempts[0]["response"]
        with first:
            assert wait_until(lambda: not providers.state().set_aside("email:first"))
            event = accept(cart_configuration, {**body, "email": "back@example.com"})
            assert pipeline.process(event.pk) == "processed"
            (received,) = first.mailbox.wait_for(1)
            assert received.recipients == ["back@example.com"]
            delivery = Delivery.objects.get(event_link__event=event)
            assert delivery.provider == "first" and [a["provider"] for a in delivery.attempts] == ["first"]
    assert len(second.mailbox.messages) == 3


def test_nothing_set_keeps_the_single_backend(settings):
    from messages.channels.email import DjangoMailBackend

    settings.EMAIL_PROVIDERS = []
    backend_for.cache_clear()
    try:
        assert type(backend_for("email")) is DjangoMailBackend
    finally:
        backend_for.cache_clear()


def test_a_wrong_provider_setting_fails_the_system_check(settings):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    settings.EMAIL_PROVIDERS = [{"name": "a", "rate_limit": -1}]
    with pytest.raises(SystemCheckError, match="rate_limit"):
        call_command("check")


def test_an_unreachable_rate_limit_store_is_a_temporary_failure_not_a_send(settings):
    settings.PROVIDERS_REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    providers.forget_state()
    sent = _Failing(SendResult("sent"))
    backend = providers.FailoverBackend("email", [providers.Provider("a", sent, rate_limit=5)])
    try:
        result = backend.send(RenderedMessage(parts={}), Recipient("x@example.com"))
    finally:
        providers.forget_state()
    assert result.outcome == "temporaryFailure" and "unreachable" in result.provider_response
    assert sent.calls == 0


@pytest.mark.django_db
def test_a_send_with_no_slot_before_its_claim_ends_waits_unsent_and_uncounted(
    cart_configuration, settings, providers_redis
):
    from django.core import mail

    from events.models import Event

    # One send per 100 s: the next slot comes after the claim's lease of 60 s has ended.
    settings.EMAIL_PROVIDERS = [
        {"name": "limited", "backend": "django.core.mail.backends.locmem.EmailBackend", "rate_limit": 0.01}
    ]
    settings.EVENT_LEASE_SECONDS = 60
    backend_for.cache_clear()
    shared = providers.state()
    assert shared.take_slot("email:limited", 1, 100_000_000) == 0  # another worker's send
    event = accept(cart_configuration, {**seed_body(scheduled=None, expiration=FUTURE)})
    assert pipeline.process(event.pk) == "pending"
    event.refresh_from_db()
    assert event.attempts == 0 and not event.deliveries.exists() and mail.outbox == []
    assert event.status_changes.last().code == "rateLimited"
    assert event.next_attempt_at > timezone.now() + dt.timedelta(seconds=90)  # when a slot is free
    shared.client.delete(f"{providers.KEY_PREFIX}:rate:email:limited")  # that slot's window over
    Event.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())
    assert wait_until(lambda: pipeline.process(event.pk) == "processed", timeout=10)
    assert Event.objects.get(pk=event.pk).attempts == 1 and len(mail.outbox) == 1
    assert Delivery.objects.get(event_link__event=event).provider == "limited"


@pytest.mark.parametrize(
    "error, fault",
    [
        (ConnectionRefusedError(111, "Connection refused"), True),
        (TimeoutError("timed out"), True),
        (smtplib.SMTPServerDisconnected("gone"), True),
        (smtplib.SMTPAuthenticationError(535, b"5.7.8 bad credentials"), True),
        (smtplib.SMTPResponseException(554, b"5.3.0 server error"), True),
        (smtplib.SMTPRecipientsRefused({"x@example.com": (550, b"5.1.1 no such user")}), False),
        (smtplib.SMTPSenderRefused(553, b"5.1.8 bad sender", "a@example.com"), False),
        (smtplib.SMTPDataError(552, b"5.3.4 message too big"), False),
    ],
)
def test_which_smtp_failures_are_the_providers(error, fault):
    from messages.channels.email import is_provider_fault

    assert is_provider_fault(error) is fault


def test_a_settings_provider_whose_send_could_outlive_a_claim_is_warned_of(settings):
    from messages.checks import providers_settings

    settings.EVENT_LEASE_SECONDS, settings.RENDER_TIMEOUT_SECONDS = 60, 2  # 53 s for a send
    smpp = "messages.channels.smpp.SmppSmsBackend"
    settings.SMS_PROVIDERS = [
        {"name": "quick", "backend": smpp, "options": {"host": "127.0.0.1", "timeout": 10}},
        {"name": "slow", "backend": smpp, "options": {"host": "127.0.0.1", "timeout": 20}},
    ]
    (warning,) = [m for m in providers_settings() if m.id == "transactional.W010"]
    assert "SMS_PROVIDERS: 'slow'" in warning.msg and "61 s" in warning.msg and "53 s" in warning.msg
    settings.EVENT_LEASE_SECONDS = 120
    assert not [m for m in providers_settings() if m.id == "transactional.W010"]
