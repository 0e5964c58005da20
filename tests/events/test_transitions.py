"""The only code that changes an event's status: the ALLOWED map, conditional updates, history rows."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db.models import Q
from django.utils import timezone

from events.models import Event, EventStatusChange
from events.transitions import ALLOWED, InvalidTransition, transition, transition_many

pytestmark = pytest.mark.django_db
S = Event.Status

LEGAL = sorted((source, target) for target, sources in ALLOWED.items() for source in sources)
ILLEGAL = sorted(
    (source, target) for target in S.values for source in S.values if source not in ALLOWED.get(target, ())
)


def event_in(configuration, status: str, **fields) -> Event:
    event = Event.objects.create(
        organization_id=configuration.organization_id,
        configuration=configuration,
        email="jack@example.com",
        next_attempt_at=timezone.now(),
        **fields,
    )
    Event.objects.filter(pk=event.pk).update(status=status)
    return Event.objects.get(pk=event.pk)


def history(event: Event) -> list[tuple[str, str, str]]:
    return list(event.status_changes.values_list("from_status", "to_status", "reason"))


def test_the_map_is_the_lifecycle_of_the_spec():
    finals = {S.PROCESSED, S.IGNORED, S.DELIVERY_FAILED, S.ROUTING_FAILED, S.TOO_OLD, S.TARGETING_FAILED}
    # A final status is never left, and only a claimed event can be sent or fail to be.
    assert all(not (sources & finals) for sources in ALLOWED.values())
    for target in (S.PROCESSED, S.IGNORED, S.DELIVERY_FAILED, S.TARGETING_FAILED):
        assert ALLOWED[target] == {S.PROCESSING}
    assert ALLOWED[S.PROCESSING] == {S.PENDING}
    assert set(ALLOWED) == set(S.values)


@pytest.mark.parametrize(("source", "target"), LEGAL)
def test_every_legal_move_works_and_writes_a_history_row(cart_configuration, source, target):
    event = event_in(cart_configuration, source)
    assert transition(event.pk, to=target, sources=[source], reason="because") is True
    event.refresh_from_db()
    assert event.status == target
    assert history(event) == [(source, target, "because")]


@pytest.mark.parametrize(("source", "target"), ILLEGAL)
def test_every_illegal_move_raises_and_changes_nothing(cart_configuration, source, target):
    event = event_in(cart_configuration, source)
    with pytest.raises(InvalidTransition):
        transition(event.pk, to=target, sources=[source])
    assert Event.objects.get(pk=event.pk).status == source
    assert not EventStatusChange.objects.exists()


def test_a_move_is_refused_if_any_of_its_sources_is_illegal(cart_configuration):
    event = event_in(cart_configuration, S.PENDING)
    with pytest.raises(InvalidTransition, match="processed"):
        transition(event.pk, to=S.PENDING, sources=[S.PENDING, S.PROCESSED])
    assert not EventStatusChange.objects.exists()


def test_a_duplicate_task_finds_the_event_moved_on_and_changes_nothing(cart_configuration):
    event = event_in(cart_configuration, S.PENDING)
    assert transition(event.pk, to=S.PROCESSING, sources=[S.PENDING]) is True
    assert transition(event.pk, to=S.PROCESSED, sources=[S.PROCESSING]) is True
    updated_at = Event.objects.get(pk=event.pk).updated_at
    # The same task delivered twice: its claim and its outcome both find the event elsewhere.
    assert transition(event.pk, to=S.PROCESSING, sources=[S.PENDING]) is False
    assert transition(event.pk, to=S.PROCESSED, sources=[S.PROCESSING]) is False
    event.refresh_from_db()
    assert event.status == S.PROCESSED and event.updated_at == updated_at
    assert [(f, t) for f, t, _ in history(event)] == [(S.PENDING, S.PROCESSING), (S.PROCESSING, S.PROCESSED)]


def test_a_stale_worker_whose_lease_was_taken_over_changes_nothing(cart_configuration):
    mine = timezone.now() + dt.timedelta(seconds=30)
    event = event_in(cart_configuration, S.PROCESSING, lease_expires_at=mine + dt.timedelta(seconds=60))
    assert (
        transition(event.pk, to=S.PROCESSED, sources=[S.PROCESSING], extra=Q(lease_expires_at=mine)) is False
    )
    assert Event.objects.get(pk=event.pk).status == S.PROCESSING
    assert not EventStatusChange.objects.exists()


def test_fields_are_set_in_the_same_update_and_final_moves_clear_the_lease(cart_configuration):
    lease = timezone.now() + dt.timedelta(seconds=60)
    event = event_in(cart_configuration, S.PENDING)
    assert transition(event.pk, to=S.PROCESSING, sources=[S.PENDING], lease_expires_at=lease, attempts=1)
    event.refresh_from_db()
    assert (event.lease_expires_at, event.attempts) == (lease, 1)
    assert transition(event.pk, to=S.PROCESSED, sources=[S.PROCESSING])
    event.refresh_from_db()
    assert event.lease_expires_at is None and event.processed_at is not None


def test_an_unknown_event_is_not_moved(cart_configuration):
    assert transition(987654321, to=S.PROCESSING, sources=[S.PENDING]) is False
    assert not EventStatusChange.objects.exists()


def test_transition_many_moves_only_events_in_its_sources_and_records_each(cart_configuration):
    pending = event_in(cart_configuration, S.PENDING)
    paused = event_in(cart_configuration, S.PAUSED)
    processing = event_in(cart_configuration, S.PROCESSING)
    processed = event_in(cart_configuration, S.PROCESSED)
    moved = transition_many(
        Q(configuration=cart_configuration),
        to=S.ROUTING_FAILED,
        sources=[S.PENDING, S.PAUSED],
        reason="unpublished",
    )
    assert sorted(moved) == sorted([pending.pk, paused.pk])
    statuses = dict(Event.objects.values_list("pk", "status"))
    assert statuses == {
        pending.pk: S.ROUTING_FAILED,
        paused.pk: S.ROUTING_FAILED,
        processing.pk: S.PROCESSING,
        processed.pk: S.PROCESSED,
    }
    assert history(pending) == [(S.PENDING, S.ROUTING_FAILED, "unpublished")]
    assert history(paused) == [(S.PAUSED, S.ROUTING_FAILED, "unpublished")]
    assert history(processing) == [] and history(processed) == []
    # Run again, as a repeated pause or unpublish would: nothing left to move.
    assert (
        transition_many(Q(configuration=cart_configuration), to=S.ROUTING_FAILED, sources=[S.PENDING]) == []
    )


def test_transition_many_refuses_an_illegal_move_before_touching_anything(cart_configuration):
    event = event_in(cart_configuration, S.PROCESSED)
    with pytest.raises(InvalidTransition):
        transition_many(Q(pk=event.pk), to=S.PENDING, sources=[S.PROCESSED])
    assert Event.objects.get(pk=event.pk).status == S.PROCESSED


@pytest.mark.django_db(transaction=True)  # outside a transaction: PostgreSQL's one-statement path
def test_recording_moves_writes_history_and_the_linked_delivery_and_keeps_it_when_the_lease_was_lost(
    cart_configuration, django_assert_max_num_queries
):
    import contextlib

    from django.db import connection

    from events.transitions import transition_recording
    from messages.models import Delivery

    message = cart_configuration.message
    lease = timezone.now() + dt.timedelta(seconds=60)

    def delivery(event: Event) -> Delivery:
        return Delivery(
            organization_id=event.organization_id, message=message, version=message.live_version,
            channel="email", recipient=event.email, outcome="sent", provider_message_id="<id@x>",
            tracking_id=f"t{event.pk}", tracked_links=["https://shop.example.com/?a=1&b=\u00e9"],
            content={"subject": 'Ça "va" ?', "html": "<p>é</p>", "text": "x\\y'"},
        )  # fmt: skip

    ours = event_in(cart_configuration, "processing", lease_expires_at=lease)
    row = delivery(ours)
    one_statement = (
        django_assert_max_num_queries(1) if connection.vendor == "postgresql" else contextlib.nullcontext()
    )
    with one_statement:
        moved = transition_recording(
            ours.pk, to="processed", source="processing", delivery=row, reason="<id@x>",
            lease=lease, last_error="", message_version=message.live_version,
        )  # fmt: skip
    assert moved
    ours.refresh_from_db()
    assert ours.status == "processed" and ours.lease_expires_at is None and ours.processed_at is not None
    assert ours.message_version == message.live_version
    assert history(ours) == [("processing", "processed", "<id@x>")]
    stored = ours.deliveries.get()  # linked to its event in the same statement
    assert stored.created_at is not None and stored.provider_message_id == "<id@x>"
    assert stored.tracking_id == f"t{ours.pk}"  # a tracked send's links, in the same statement
    assert stored.tracked_links == ["https://shop.example.com/?a=1&b=\u00e9"]
    # The rendered content goes through the same statement, as JSON, unchanged.
    assert stored.content == {"subject": 'Ça "va" ?', "html": "<p>é</p>", "text": "x\\y'"}
    assert list(stored.events.all()) == [ours] and stored.message == message

    lost = event_in(cart_configuration, "processing", lease_expires_at=lease + dt.timedelta(seconds=1))
    assert not transition_recording(
        lost.pk, to="processed", source="processing", delivery=delivery(lost), lease=lease
    )
    lost.refresh_from_db()
    assert lost.status == "processing" and history(lost) == []
    assert lost.deliveries.count() == 1  # the send happened: it stays recorded, linked to its event


@pytest.mark.django_db(transaction=True)  # outside a transaction: PostgreSQL's one-statement path
def test_a_group_of_moves_is_recorded_at_once_each_as_it_would_be_alone(
    cart_configuration, django_assert_max_num_queries
):
    """A worker's group: sends recorded, one without a send, a retry, and one whose lease was lost
    (its delivery kept). One statement on PostgreSQL, whatever the group's size."""
    import contextlib

    from django.db import connection

    from events.transitions import Move, record_moves
    from messages.models import Delivery

    message, lease = cart_configuration.message, timezone.now() + dt.timedelta(seconds=60)
    retry_at = timezone.now() + dt.timedelta(minutes=5)

    def delivery(event: Event, outcome: str = "sent") -> Delivery:
        return Delivery(
            organization_id=event.organization_id, message=message, version=message.live_version,
            channel="email", recipient=f"{event.pk}@example.com", outcome=outcome,
            provider_message_id=f"<{event.pk}@x>", content={"subject": f"é {event.pk}"},
        )  # fmt: skip

    sent, other, ignored, retried, lost = (
        event_in(cart_configuration, "processing", lease_expires_at=lease) for _ in range(5)
    )
    Event.objects.filter(pk=lost.pk).update(lease_expires_at=lease + dt.timedelta(seconds=1))
    version, processed = message.live_version, "processed"
    moves = [
        Move(sent.pk, processed, "processing", "<1@x>", lease, delivery(sent), {"message_version": version}),
        Move(other.pk, "processed", "processing", "<2@x>", lease, delivery(other), {"last_error": ""}),
        Move(ignored.pk, "ignored", "processing", "quarantined", lease),
        Move(retried.pk, "pending", "processing", "451 later", lease, delivery(retried, "temporaryFailure"),
             {"last_error": "451 later", "next_attempt_at": retry_at, "enqueued_at": None}),
        Move(lost.pk, "processed", "processing", "<5@x>", lease, delivery(lost)),
    ]  # fmt: skip
    one_statement = (
        django_assert_max_num_queries(1) if connection.vendor == "postgresql" else contextlib.nullcontext()
    )
    with one_statement:
        moved = record_moves(moves)
    assert moved == {sent.pk, other.pk, ignored.pk, retried.pk}
    sent, other, ignored, retried, lost = (
        Event.objects.get(pk=e.pk) for e in (sent, other, ignored, retried, lost)
    )
    assert (sent.status, sent.message_version, sent.lease_expires_at) == ("processed", version, None)
    assert sent.processed_at is not None and other.status == "processed" and other.message_version is None
    assert (ignored.status, ignored.processed_at, ignored.deliveries.count()) == ("ignored", None, 0)
    assert (retried.status, retried.next_attempt_at, retried.last_error) == ("pending", retry_at, "451 later")
    assert retried.deliveries.get().outcome == "temporaryFailure"
    assert history(sent) == [("processing", "processed", "<1@x>")] and history(lost) == []
    assert history(retried) == [("processing", "pending", "451 later")]
    assert lost.status == "processing" and lost.deliveries.get().provider_message_id == f"<{lost.pk}@x>"
    for event in (sent, other, lost):  # each delivery linked to its own event, its content whole
        assert event.deliveries.get().content == {"subject": f"é {event.pk}"}
