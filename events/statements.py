"""The raw SQL statements of the event's way, written out rather than edited from Django's
generated SQL.

Accepting an event (both databases): the INSERT happens only if its configuration is still
published as the API validated it, so that an unpublish takes the endpoint down at once whatever
a process has cached (zero rows: the caller answers 404, or validates again):

    INSERT INTO event (...) SELECT %s, ... WHERE EXISTS
        (SELECT 1 FROM configuration WHERE id = %s AND status = 'published' AND published_at = %s)
    RETURNING id

Recording a send (PostgreSQL): an event's final move, its history row, its delivery and the
delivery's link to the event in one statement (data-modifying CTEs), so that recording a send is
one round trip.

    WITH moved AS (UPDATE event SET ... WHERE id = %s AND status = %s AND lease = %s RETURNING id),
         history AS (INSERT INTO history (...) SELECT %s, ... FROM moved),
         delivery AS (INSERT INTO delivery (...) VALUES (...) RETURNING id),
         link AS (INSERT INTO event_delivery (delivery_id, event_id) SELECT id, %s FROM delivery)
    SELECT count(*) FROM moved

A worker records the sends of a group of events at once (events.pipeline): the same four parts
for each event, named `moved_0`, `history_0`... in one statement that answers the ids that moved
(`record_moves_sql`). One statement is one transaction and one commit, whatever the group's size.

Table and column names come from the models' `_meta` and values are prepared by each field
(`pre_save`, `get_db_prep_save`), so the statement follows the models as the ORM would. The text
of a part depends only on which columns it writes: it is built once per process for each shape.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections, models

from events import reasons
from events.models import Event, EventConfiguration, EventDelivery, EventStatusChange
from messages.models import Delivery


@dataclass(frozen=True)
class MoveRow:
    """One event's part of a recording statement: its move, its history row, its delivery."""

    event_id: int
    source: str
    lease: dt.datetime | None
    changes: Mapping[str, Any]
    history: EventStatusChange
    delivery: Delivery | None


def _quote(name: str | None) -> str:
    assert name, "a table or column name"
    return connection.ops.quote_name(name)


@functools.cache
def _column(model: type[models.Model], name: str) -> tuple[models.Field, str]:
    """A field by name and its quoted column (the metadata read once per process)."""
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field) and field.concrete, name
    return field, _quote(field.column)


@functools.cache
def _inserted_fields(model: type[models.Model]) -> tuple[models.Field, ...]:
    return tuple(field for field in model._meta.local_concrete_fields if not field.primary_key)


def _prepared(
    model: type[models.Model], values: Mapping[str, Any], database: Any = None
) -> tuple[list[str], list[Any]]:
    """Quoted columns and database values for `values`, keyed by field name."""
    database = database or connections[DEFAULT_DB_ALIAS]
    columns, params = [], []
    for name, value in values.items():
        field, column = _column(model, name)
        if field.is_relation and isinstance(value, models.Model):
            value = value.pk
        columns.append(column)
        params.append(field.get_db_prep_save(value, database))
    return columns, params


def _insert_values(row: models.Model, database: Any = None) -> tuple[list[str], list[Any]]:
    """The columns and values an INSERT of `row` writes (its id left to the database)."""
    values = {field.name: field.pre_save(row, add=True) for field in _inserted_fields(type(row))}
    return _prepared(type(row), values, database)


@functools.lru_cache(maxsize=256)
def _parts_sql(
    suffix: str,
    set_columns: tuple[str, ...],
    held: bool,
    history_columns: tuple[str, ...],
    delivery_columns: tuple[str, ...] | None,
) -> str:
    """The CTEs of one event's move (their names ending in `suffix`), for one shape of values."""
    meta = Event._meta
    pk = _quote(meta.pk.column)
    assignments = ", ".join(f"{column} = %s" for column in set_columns)
    where = [f"{pk} = %s", f"{_quote(meta.get_field('status').column)} = %s"]
    if held:
        where.append(f"{_quote(meta.get_field('lease_expires_at').column)} = %s")
    parts = [
        f"moved{suffix} AS (UPDATE {_quote(meta.db_table)} SET {assignments} "
        f"WHERE {' AND '.join(where)} RETURNING {pk})"
    ]
    # The history row only if the event moved: INSERT ... SELECT ... FROM moved.
    placeholders = ", ".join(["%s"] * len(history_columns))
    parts.append(
        f"history{suffix} AS (INSERT INTO {_quote(EventStatusChange._meta.db_table)} "
        f"({', '.join(history_columns)}) SELECT {placeholders} FROM moved{suffix})"
    )
    # The delivery and its link to the event whatever the move's outcome: a send that happened
    # stays recorded, and the next attempt finds it through the link.
    if delivery_columns is not None:
        delivery_pk = _quote(Delivery._meta.pk.column)
        placeholders = ", ".join(["%s"] * len(delivery_columns))
        parts.append(
            f"delivery{suffix} AS (INSERT INTO {_quote(Delivery._meta.db_table)} "
            f"({', '.join(delivery_columns)}) VALUES ({placeholders}) RETURNING {delivery_pk})"
        )
        link = EventDelivery._meta
        parts.append(
            f"link{suffix} AS (INSERT INTO {_quote(link.db_table)} "
            f"({_quote(link.get_field('delivery').column)}, {_quote(link.get_field('event').column)}) "
            f"SELECT {delivery_pk}, %s FROM delivery{suffix})"
        )
    return ", ".join(parts)


def _parts(row: MoveRow, suffix: str, database: Any) -> tuple[str, list[Any]]:
    set_columns, params = _prepared(Event, row.changes, database)
    params.extend([row.event_id, row.source])
    if row.lease is not None:
        params.extend(_prepared(Event, {"lease_expires_at": row.lease}, database)[1])
    history_columns, history_params = _insert_values(row.history, database)
    params.extend(history_params)
    delivery_columns = None
    if row.delivery is not None:
        delivery_columns, delivery_params = _insert_values(row.delivery, database)
        params.extend(delivery_params)
        params.append(row.event_id)
    sql = _parts_sql(
        suffix,
        tuple(set_columns),
        row.lease is not None,
        tuple(history_columns),
        tuple(delivery_columns) if delivery_columns is not None else None,
    )
    return sql, params


def insert_event_if_published_sql(event: Event, *, published_at: dt.datetime | None) -> tuple[str, list[Any]]:
    """The INSERT of `event` (its values prepared as `save()` would), conditional on its configuration
    being published since `published_at`; it answers the new id, or no row. PostgreSQL and SQLite
    (3.35+) both return columns from an INSERT, and both type the SELECT's values as the columns'.

    The statement's text depends on the models only: written once per database vendor (it is on
    every POST's path), the values prepared per event."""
    database = connections[DEFAULT_DB_ALIAS]  # itself: the `connection` proxy costs a lookup per use
    sql, fields, published_at_field = _insert_event_if_published(database.vendor)
    values = [field.get_db_prep_save(field.pre_save(event, True), database) for field in fields]
    values += [
        event.configuration_id,
        EventConfiguration.Status.PUBLISHED.value,
        published_at_field.get_db_prep_save(published_at, database),
    ]
    return sql, values


@functools.cache
def _insert_event_if_published(vendor: str) -> tuple[str, tuple[models.Field, ...], models.Field]:
    """The statement's text for this vendor's quoting (`vendor` keys the cache), the fields whose
    values it takes, in order (every concrete field but the id, which the database draws), and the
    field of the publication's date."""
    fields = tuple(field for field in Event._meta.local_concrete_fields if not field.primary_key)
    columns = ", ".join(_quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    configuration = EventConfiguration._meta
    conditions = " AND ".join(
        f"{_column(EventConfiguration, name)[1]} = %s" for name in ("id", "status", "published_at")
    )
    sql = (
        f"INSERT INTO {_quote(Event._meta.db_table)} ({columns}) SELECT {placeholders} "
        f"WHERE EXISTS (SELECT 1 FROM {_quote(configuration.db_table)} WHERE {conditions}) "
        f"RETURNING {_quote(Event._meta.pk.column)}"
    )
    published_at = configuration.get_field("published_at")
    assert isinstance(published_at, models.Field)
    return sql, fields, published_at


def record_move_sql(
    *,
    event_id: int,
    source: str,
    lease: dt.datetime | None,
    changes: Mapping[str, Any],
    history: EventStatusChange,
    delivery: Delivery | None,
) -> tuple[str, list[Any]]:
    """The statement and its parameters; it answers one row: how many events moved (0 or 1)."""
    row = MoveRow(event_id, source, lease, changes, history, delivery)
    sql, params = _parts(row, "", connections[DEFAULT_DB_ALIAS])
    return f"WITH {sql} SELECT count(*) FROM moved", params


def _array_type(model: type[models.Model], column: str, database: Any) -> str:
    field = next(f for f in model._meta.concrete_fields if _quote(f.column) == column)
    return f"{field.db_type(database)}[]"


@functools.lru_cache(maxsize=64)
def _group_sql(
    changed: tuple[tuple[str, bool], ...],
    history_columns: tuple[str, ...],
    delivery_columns: tuple[str, ...] | None,
) -> str:
    """The text of a group's statement, for one shape: the columns moved (each with whether every
    event of the group writes it: else a flag says which do), the history's and the delivery's."""
    database = connections[DEFAULT_DB_ALIAS]
    event, pk = Event._meta, _quote(Event._meta.pk.column)
    status, lease = (
        _quote(event.get_field("status").column),
        _quote(event.get_field("lease_expires_at").column),
    )
    values = ["event_id", "source", "lease"]
    types = ["bigint[]", f"{event.get_field('status').db_type(database)}[]", "timestamp with time zone[]"]
    assignments = []
    for index, (column, everywhere) in enumerate(changed):
        values.append(f"c{index}")
        types.append(_array_type(Event, column, database))
        if everywhere:
            assignments.append(f"{column} = v.c{index}")
        else:
            values.append(f"s{index}")
            types.append("boolean[]")
            assignments.append(f"{column} = CASE WHEN v.s{index} THEN v.c{index} ELSE e.{column} END")
    unnest = ", ".join(f"%s::{kind}" for kind in types)
    parts = [
        f"v AS (SELECT * FROM unnest({unnest}) AS v({', '.join(values)}))",
        f"moved AS (UPDATE {_quote(event.db_table)} AS e SET {', '.join(assignments)} FROM v "
        f"WHERE e.{pk} = v.event_id AND e.{status} = v.source AND (v.lease IS NULL OR e.{lease} = v.lease) "
        f"RETURNING e.{pk})",
    ]
    # The history rows of the events that moved.
    history = EventStatusChange._meta
    names = [f"h{index}" for index in range(len(history_columns))]
    event_column = _quote(history.get_field("event").column)
    kinds = ", ".join(f"%s::{_array_type(EventStatusChange, c, database)}" for c in history_columns)
    parts.append(
        f"history AS (INSERT INTO {_quote(history.db_table)} ({', '.join(history_columns)}) "
        f"SELECT {', '.join(names)} FROM unnest({kinds}) AS h({', '.join(names)}) "
        f"WHERE h.h{history_columns.index(event_column)} IN (SELECT {pk} FROM moved))"
    )
    # Every delivery, and its link to its event, whatever the moves' outcome; each delivery's id
    # drawn first (MATERIALIZED: once per row), so that the link knows it.
    if delivery_columns is not None:
        delivery = Delivery._meta
        delivery_pk = _quote(delivery.pk.column)
        names = [f"d{index}" for index in range(len(delivery_columns))]
        kinds = ", ".join(f"%s::{_array_type(Delivery, c, database)}" for c in delivery_columns)
        sequence = f"pg_get_serial_sequence('{delivery.db_table}', '{delivery.pk.column}')"
        parts.append(
            f"d AS MATERIALIZED (SELECT nextval({sequence}) AS id, * FROM "
            f"unnest(%s::bigint[], {kinds}) AS d(event_id, {', '.join(names)}))"
        )
        parts.append(
            f"delivery AS (INSERT INTO {_quote(delivery.db_table)} "
            f"({delivery_pk}, {', '.join(delivery_columns)}) SELECT id, {', '.join(names)} FROM d)"
        )
        link = EventDelivery._meta
        parts.append(
            f"link AS (INSERT INTO {_quote(link.db_table)} "
            f"({_quote(link.get_field('delivery').column)}, {_quote(link.get_field('event').column)}) "
            f"SELECT id, event_id FROM d)"
        )
    return f"WITH {', '.join(parts)} SELECT {pk} FROM moved"


def record_moves_sql(rows: Sequence[MoveRow]) -> tuple[str, list[Any]]:
    """One statement for a group of events' moves; it answers a row per event that moved: its id.

    Its text depends on the shape of the group (which columns move), not on its size: each column's
    values are one array parameter (`unnest`), so the text is parsed once per process and shape.
    """
    assert rows, "at least one move"
    database = connections[DEFAULT_DB_ALIAS]
    prepared = [_prepared(Event, row.changes, database) for row in rows]
    columns: dict[str, list[Any]] = {}
    written: dict[str, list[bool]] = {}
    for position, (names, values) in enumerate(prepared):
        for column, value in zip(names, values, strict=True):
            columns.setdefault(column, [None] * len(rows))[position] = value
            written.setdefault(column, [False] * len(rows))[position] = True
    lease = [_prepared(Event, {"lease_expires_at": row.lease}, database)[1][0] for row in rows]
    params: list[Any] = [[row.event_id for row in rows], [row.source for row in rows], lease]
    changed = []
    for column, values in columns.items():
        everywhere = all(written[column])
        changed.append((column, everywhere))
        params.append(values)
        if not everywhere:
            params.append(written[column])
    histories = [_insert_values(row.history, database) for row in rows]
    history_columns = tuple(histories[0][0])
    params.extend(list(values) for values in zip(*(values for _, values in histories), strict=True))
    delivered = [row for row in rows if row.delivery is not None]
    delivery_columns = None
    if delivered:
        inserts = [_insert_values(row.delivery, database) for row in delivered]  # type: ignore[arg-type]
        delivery_columns = tuple(inserts[0][0])
        params.append([row.event_id for row in delivered])
        params.extend(list(values) for values in zip(*(values for _, values in inserts), strict=True))
    return _group_sql(tuple(changed), history_columns, delivery_columns), params


@functools.cache
def _claim_sql(history_columns: tuple[str, ...], *, backlog: bool) -> str:
    event, pk = Event._meta, _quote(Event._meta.pk.column)
    column = {
        name: _column(Event, name)[1]
        for name in ("status", "next_attempt_at", "updated_at", "lease_expires_at", "attempts", "enqueued_at")
    }
    assignments = [
        f"{column['status']} = %s",
        f"{column['updated_at']} = %s",
        f"{column['lease_expires_at']} = %s",
        f"{column['attempts']} = e.{column['attempts']} + 1",
        f"{column['enqueued_at']} = NULL",
    ]
    due = f"{column['status']} = %s AND {column['next_attempt_at']} <= %s"
    if backlog:  # the oldest due first, on the due index (status, next_attempt_at); not those a task
        # carries, unless it was handed them long enough ago to be stuck behind busy processes
        picked = (
            f"WHERE {due} AND ({column['enqueued_at']} IS NULL OR {column['enqueued_at']} < %s) "
            f"ORDER BY {column['next_attempt_at']}, {pk} LIMIT %s"
        )
    else:
        picked = f"WHERE {pk} = ANY(%s) AND {due} ORDER BY {pk}"
    event_column = _quote(EventStatusChange._meta.get_field("event").column)
    selected = [pk if name == event_column else "%s" for name in history_columns]
    return (
        f"WITH picked AS (SELECT {pk} FROM {_quote(event.db_table)} {picked} FOR UPDATE SKIP LOCKED), "
        f"moved AS (UPDATE {_quote(event.db_table)} AS e SET {', '.join(assignments)} FROM picked "
        f"WHERE e.{pk} = picked.{pk} RETURNING e.{pk}), "
        f"history AS (INSERT INTO {_quote(EventStatusChange._meta.db_table)} ({', '.join(history_columns)}) "
        f"SELECT {', '.join(selected)} FROM moved) "
        f"SELECT {pk} FROM moved ORDER BY {pk}"
    )


def claim_sql(
    event_ids: Sequence[int] | None,
    *,
    source: str,
    to: str,
    now: dt.datetime,
    lease: dt.datetime,
    limit: int = 0,
    handed_before: dt.datetime | None = None,
    worker: str = "",
) -> tuple[str, list[Any]]:
    """Claim events in one statement: these (`event_ids`), or else the `limit` oldest due ones
    that no task carries or whose task was handed them before `handed_before`; those in `source`
    and due, and not locked by another claim in progress, move to `to` with `lease`, their attempt
    counted, a history row each (its code `claimed`, and the claiming `worker`). It answers the
    ids claimed. The text is the same whatever the ids: parsed once per process."""
    database = connections[DEFAULT_DB_ALIAS]
    history = EventStatusChange(
        event_id=0, from_status=source, to_status=to, reason="", code=reasons.CLAIMED, worker=worker
    )
    columns, values = _insert_values(history, database)
    event_column = _quote(EventStatusChange._meta.get_field("event").column)
    history_params = [value for name, value in zip(columns, values, strict=True) if name != event_column]
    _, (at, until, handed) = _prepared(
        Event,
        {"updated_at": now, "lease_expires_at": lease, "enqueued_at": handed_before or now},
        database,
    )
    if event_ids is None:
        picked: list[Any] = [source, at, handed, limit]
    else:
        picked = [list(event_ids), source, at]
    params = [*picked, to, at, until, *history_params]
    return _claim_sql(tuple(columns), backlog=event_ids is None), params
