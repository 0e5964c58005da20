"""SMS receipts as providers send them: a repeated receipt is kept once, also when two copies
arrive at the same moment on two connections (the database's unique constraint decides)."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import IntegrityError, connection, connections, transaction

from messages import sms_replies
from messages.models import Delivery, SmsReceipt

pytestmark = pytest.mark.django_db
RECEIPT = {"provider": "twilio", "message_id": "SM1", "status": "delivered", "error_code": ""}


def sms_delivery(configuration) -> Delivery:
    return Delivery.objects.create(
        organization=configuration.organization,
        message=configuration.message,
        channel="sms",
        recipient="+33612345678",
        outcome="sent",
        provider_message_id="SM1",
    )


def test_a_repeated_receipt_answers_with_the_row_kept_first(cart_configuration):
    delivery = sms_delivery(cart_configuration)
    first = sms_replies.record_receipt(**RECEIPT, raw="first")
    again = sms_replies.record_receipt(**RECEIPT, raw="again")
    assert again.pk == first.pk and again.raw == "first" and first.delivery == delivery
    other = sms_replies.record_receipt(**{**RECEIPT, "status": "undelivered", "error_code": "30005"})
    assert other.pk != first.pk
    assert SmsReceipt.objects.count() == 2


def test_the_database_refuses_a_second_identical_receipt():
    SmsReceipt.objects.create(**RECEIPT)
    with pytest.raises(IntegrityError), transaction.atomic():
        SmsReceipt.objects.create(**RECEIPT)


def test_a_receipt_recorded_inside_a_transaction_that_loses_the_race_leaves_the_transaction_usable(
    monkeypatch,
):
    """The copy that finds nothing, then collides on insert (the other copy committed in between),
    answers with the other's row; its savepoint keeps the caller's transaction alive."""
    won = SmsReceipt.objects.create(**RECEIPT)
    real_filter = SmsReceipt.objects.filter
    calls = []

    def first_look_misses(*args, **kwargs):
        calls.append(kwargs)
        found = real_filter(*args, **kwargs)
        return found.none() if len(calls) == 1 else found

    monkeypatch.setattr(SmsReceipt.objects, "filter", first_look_misses)
    with transaction.atomic():
        lost = sms_replies.record_receipt(**RECEIPT)
        assert lost.pk == won.pk
        assert SmsReceipt.objects.count() == 1  # the transaction still answers


@pytest.mark.django_db(transaction=True)
def test_two_identical_receipts_at_once_on_postgresql_keep_one_row():
    """Copy A inserts and holds its transaction open; copy B, on its own connection, finds nothing
    (A has not committed), inserts and waits on A's row lock; A commits; B answers with A's row."""
    if connection.vendor != "postgresql":
        pytest.skip("concurrent connections: PostgreSQL only (SQLite serialises its writers)")
    inserted, release, answers = threading.Event(), threading.Event(), {}

    def copy_a() -> None:
        try:
            with transaction.atomic():
                answers["a"] = sms_replies.record_receipt(**RECEIPT, raw="a")
                inserted.set()
                release.wait(timeout=30)
        finally:
            connections.close_all()

    def copy_b() -> None:
        try:
            inserted.wait(timeout=30)
            answers["b"] = sms_replies.record_receipt(**RECEIPT, raw="b")
        except Exception as error:  # noqa: BLE001  # shown by the assertion below
            answers["b"] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=copy_a), threading.Thread(target=copy_b)]
    for thread in threads:
        thread.start()
    assert inserted.wait(timeout=30)
    waiting_on_a_lock(timeout=30)
    release.set()
    for thread in threads:
        thread.join(timeout=30)
    assert isinstance(answers["b"], SmsReceipt), answers["b"]
    assert answers["b"].pk == answers["a"].pk and answers["b"].raw == "a"
    assert SmsReceipt.objects.count() == 1


def waiting_on_a_lock(*, timeout: float) -> None:
    """Until another connection of this database waits on a lock (copy B's insert on A's row)."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.02)
    raise AssertionError("copy B never waited on copy A's insert")
