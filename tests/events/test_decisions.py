"""Decisions: what processing an event stores with its move, typed."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from events import decisions
from events.models import Event


def test_retry_delays_never_come_before_the_configured_delay_and_double(settings):
    settings.EVENT_RETRY_DELAY_SECONDS = 10
    for attempt, base in ((1, 10), (2, 20), (3, 40)):
        delays = [decisions.retry_delay(attempt) for _ in range(200)]
        assert base <= min(delays) and max(delays) < base * 1.5


def an_event(*, attempts: int, expires_in: dt.timedelta | None = None) -> Event:
    expiration = timezone.now() + expires_in if expires_in is not None else None
    return Event(attempts=attempts, expiration_at=expiration)


def test_a_temporary_failure_puts_the_event_back_in_the_queue_with_its_error(settings):
    settings.EVENT_MAX_ATTEMPTS, settings.EVENT_RETRY_DELAY_SECONDS = 3, 60
    decision = decisions.retry_or_fail(an_event(attempts=1), "451 try later")
    assert decision.outcome == decisions.Outcome(
        "pending", "attempt 1 failed, retrying: 451 try later", "retryScheduled"
    )
    fields = decision.event_fields()
    assert fields.pop("next_attempt_at") > timezone.now() + dt.timedelta(seconds=59)
    assert fields == {"last_error": "451 try later", "enqueued_at": None, "lease_expires_at": None}


def test_the_last_attempt_or_an_expiration_before_the_retry_ends_the_event(settings):
    settings.EVENT_MAX_ATTEMPTS, settings.EVENT_RETRY_DELAY_SECONDS = 3, 60
    last = decisions.retry_or_fail(an_event(attempts=3), "451 try later")
    assert last.outcome.status == "deliveryFailed" and last.event_fields() == {"last_error": "451 try later"}
    soon = decisions.retry_or_fail(an_event(attempts=1, expires_in=dt.timedelta(seconds=30)), "451")
    assert soon.outcome.status == "tooOld" and soon.event_fields() == {"last_error": "451"}


def test_a_decision_writes_only_what_it_knows_and_keeps_the_rest_of_the_event():
    """A decision taken before targeting says nothing of the profile: an earlier attempt's stays."""
    routing = decisions.Decision(decisions.Outcome("routingFailed", "no published message"))
    assert routing.event_fields() == {}
    sent = decisions.Decision(decisions.Outcome("processed", "<id@example.com>"), last_error="")
    assert sent.event_fields() == {"last_error": ""}  # a success clears an earlier attempt's error


def test_a_server_s_retry_after_is_the_least_delay_of_the_next_attempt(settings):
    settings.EVENT_MAX_ATTEMPTS, settings.EVENT_RETRY_DELAY_SECONDS = 3, 1
    decision = decisions.retry_or_fail(an_event(attempts=1), "503 UNAVAILABLE", not_before=600)
    assert decision.retry_at is not None and decision.retry_at > timezone.now() + dt.timedelta(seconds=599)
    shorter = decisions.retry_or_fail(an_event(attempts=1), "503 UNAVAILABLE", not_before=0.1)
    assert shorter.retry_at is not None and shorter.retry_at > timezone.now() + dt.timedelta(seconds=0.9)
    late = decisions.retry_or_fail(
        an_event(attempts=1, expires_in=dt.timedelta(seconds=300)), "503", not_before=600
    )
    assert late.outcome.status == "tooOld"  # the server's delay runs past the expiration
