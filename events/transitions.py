"""THE only code that changes an event's status.

Each move is one conditional UPDATE (`... WHERE status IN (allowed sources)`) that reports whether
it won, so a duplicate task or a stale worker changes nothing; the history row is written in the
same transaction. A move the ALLOWED map forbids raises InvalidTransition.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from events.models import Event, EventDelivery, EventStatusChange
from events.statements import MoveRow, record_move_sql, record_moves_sql
from messages.models import Delivery

S = Event.Status

ALLOWED: dict[str, frozenset[str]] = {
    # to-status: the statuses it may come from
    S.PENDING: frozenset({S.PENDING, S.PROCESSING, S.PAUSED}),
    S.PROCESSING: frozenset({S.PENDING}),
    S.PAUSED: frozenset({S.PENDING, S.PROCESSING}),
    S.PROCESSED: frozenset({S.PROCESSING}),
    S.IGNORED: frozenset({S.PROCESSING}),
    S.DELIVERY_FAILED: frozenset({S.PROCESSING}),
    S.TARGETING_FAILED: frozenset({S.PROCESSING}),
    S.ROUTING_FAILED: frozenset({S.PENDING, S.PROCESSING, S.PAUSED}),
    S.TOO_OLD: frozenset({S.PENDING, S.PROCESSING, S.PAUSED}),
}


class InvalidTransition(Exception):
    pass


def check_move(sources: Iterable[str], target: str) -> list[str]:
    """The sources, if the ALLOWED map lets each move to `target`; else InvalidTransition."""
    sources = list(sources)
    forbidden = [s for s in sources if s not in ALLOWED[target]]
    if forbidden:
        raise InvalidTransition(f"an event cannot go from {', '.join(forbidden)} to {target}")
    return sources


def transition(
    event_id: int,
    *,
    to: str,
    sources: Iterable[str],
    reason: str = "",
    code: str = "",
    worker: str = "",
    version_number: int | None = None,
    extra: Q | None = None,
    **fields: Any,
) -> bool:
    """Move one event from any of `sources` to `to`; return False if it was not in those states.

    `fields` are set in the same UPDATE (lease, attempts, next_attempt_at...); `extra` narrows the
    WHERE clause further (e.g. only if the lease is still ours).
    """
    sources = check_move(sources, to)
    now = timezone.now()
    narrowed = Q(pk=event_id) & (extra if extra is not None else Q())
    # No savepoint when called inside a larger transaction (recording a delivery): nothing here
    # catches a database error, so the outer transaction's rollback is the right outcome anyway.
    with transaction.atomic(savepoint=False):
        if len(sources) == 1:
            previous = sources[0]  # one possible source: the UPDATE alone decides
        else:
            # The previous status is needed for the history row: read it under the same conditions.
            found = (
                Event.objects.filter(narrowed, status__in=sources).values_list("status", flat=True).first()
            )
            if found is None:
                return False
            previous = found
        updated = Event.objects.filter(narrowed, status=previous).update(
            status=to, updated_at=now, **_final_fields(to, now), **fields
        )
        if not updated:
            return False
        EventStatusChange.objects.create(
            event_id=event_id,
            from_status=previous,
            to_status=to,
            reason=reason[:2000],
            code=code,
            worker=worker,
            version_number=version_number,
        )
    return True


@dataclass(frozen=True)
class Move:
    """One event's recorded move (`record_moves`): from one source to `to`, only while `lease` holds
    (when given), with its reason and its code (events.reasons), the columns written with it, and
    the delivery of a send."""

    event_id: int
    to: str
    source: str
    reason: str = ""
    lease: dt.datetime | None = None
    delivery: Delivery | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    code: str = ""


def transition_recording(
    event_id: int,
    *,
    to: str,
    source: str,
    delivery: Delivery | None = None,
    reason: str = "",
    lease: dt.datetime | None = None,
    **fields: Any,
) -> bool:
    """`transition` from one source (and, given `lease`, only while that lease holds), plus the
    `delivery` and its link to the event, inserted whatever the move's outcome (the delivery of a
    message that was sent must be recorded even if the lease was lost).

    On PostgreSQL, outside a transaction, it is one statement (events.statements): one round trip
    instead of five, and atomic as any statement is. Elsewhere, the same in one transaction.
    """
    move = Move(event_id, to, source, reason=reason, lease=lease, delivery=delivery, fields=fields)
    return event_id in record_moves([move])


def record_moves(moves: Sequence[Move]) -> set[int]:
    """`transition_recording` for several events at once, atomically: one statement on PostgreSQL
    outside a transaction (one round trip, one commit for a worker's group of sends), else one
    transaction. Returns the ids of the events that moved; every delivery is recorded."""
    for move in moves:
        check_move([move.source], move.to)
    if not moves:
        return set()
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        moved = set()
        with transaction.atomic():
            for move in moves:
                if move.delivery is not None:
                    move.delivery.save(force_insert=True)
                    EventDelivery.objects.create(delivery=move.delivery, event_id=move.event_id)
                held = Q(lease_expires_at=move.lease) if move.lease is not None else None
                if transition(
                    move.event_id,
                    to=move.to,
                    sources=[move.source],
                    reason=move.reason,
                    code=move.code,
                    version_number=_version_number(move),
                    extra=held,
                    **move.fields,
                ):
                    moved.add(move.event_id)
        return moved
    if len(moves) == 1:
        [move] = moves
        now = timezone.now()
        sql, params = record_move_sql(
            event_id=move.event_id,
            source=move.source,
            lease=move.lease,
            changes={"status": move.to, "updated_at": now, **_final_fields(move.to, now), **move.fields},
            history=_history(move),
            delivery=move.delivery,
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            (count,) = cursor.fetchone()
        return {move.event_id} if count else set()
    return write_recording(recording_statement(moves))


def recording_statement(moves: Sequence[Move]) -> str:
    """The statement that records these moves on PostgreSQL (`record_moves`), its values in it:
    built wherever is convenient (a worker's task thread), written by `write_recording` elsewhere
    (its recorder thread), so that the writer has only the round trip to make."""
    for move in moves:
        check_move([move.source], move.to)
    now = timezone.now()
    rows = [
        MoveRow(
            event_id=move.event_id,
            source=move.source,
            lease=move.lease,
            changes={"status": move.to, "updated_at": now, **_final_fields(move.to, now), **move.fields},
            history=_history(move),
            delivery=move.delivery,
        )
        for move in moves
    ]
    return connection.ops.compose_sql(*record_moves_sql(rows))  # type: ignore[attr-defined]  # PostgreSQL's


def write_recording(statement: str) -> set[int]:
    """Run a `recording_statement`; the ids of the events that moved."""
    with connection.cursor() as cursor:
        cursor.execute(statement)
        return {pk for (pk,) in cursor.fetchall()}


def _history(move: Move) -> EventStatusChange:
    return EventStatusChange(
        event_id=move.event_id,
        from_status=move.source,
        to_status=move.to,
        reason=move.reason[:2000],
        code=move.code,
        version_number=_version_number(move),
    )


def _version_number(move: Move) -> int | None:
    """The number of the version the move's attempt was routed to (written with it), if any."""
    version = move.fields.get("message_version")
    return getattr(version, "number", None)


def transition_many(
    queryset_filter: Q,
    *,
    to: str,
    sources: Iterable[str],
    reason: str = "",
    code: str = "",
    worker: str = "",
    **fields: Any,
) -> list[int]:
    """Move every event matching `queryset_filter` and `sources` to `to`; return the ids moved.

    Used by pause / resume / unpublish and the sweep: rows are locked (SKIP LOCKED where the
    database has it) so that a worker holding one is not waited for, and it keeps its own move.
    """
    sources = check_move(sources, to)
    now = timezone.now()
    with transaction.atomic():
        locked = Event.objects.filter(queryset_filter, status__in=sources).select_for_update(skip_locked=True)
        rows = list(locked.values_list("pk", "status"))
        if not rows:
            return []
        ids = [pk for pk, _ in rows]
        Event.objects.filter(pk__in=ids).update(status=to, updated_at=now, **_final_fields(to, now), **fields)
        EventStatusChange.objects.bulk_create(
            [
                EventStatusChange(
                    event_id=pk,
                    from_status=status,
                    to_status=to,
                    reason=reason[:2000],
                    code=code,
                    worker=worker,
                )
                for pk, status in rows
            ]
        )
    return ids


def _final_fields(to: str, now: dt.datetime) -> dict[str, Any]:
    if to in (S.PENDING, S.PROCESSING):
        return {}
    return {"lease_expires_at": None, **({"processed_at": now} if to == S.PROCESSED else {})}
