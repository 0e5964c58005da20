"""The one raw SQL statement of the pipeline, written out rather than edited from Django's
generated SQL: on PostgreSQL, an event's final move, its history row, its delivery and the
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

from events.models import Event, EventDelivery, EventStatusChange
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


def record_moves_sql(rows: Sequence[MoveRow]) -> tuple[str, list[Any]]:
    """One statement for several events' moves; it answers a row per event that moved: its id."""
    assert rows, "at least one move"
    database = connections[DEFAULT_DB_ALIAS]
    texts, params = [], []
    for index, row in enumerate(rows):
        sql, row_params = _parts(row, f"_{index}", database)
        texts.append(sql)
        params.extend(row_params)
    pk = _quote(Event._meta.pk.column)
    moved = " UNION ALL ".join(f"SELECT {pk} FROM moved_{index}" for index in range(len(rows)))
    return f"WITH {', '.join(texts)} {moved}", params
