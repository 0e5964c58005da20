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

Table and column names come from the models' `_meta` and values are prepared by each field
(`pre_save`, `get_db_prep_save`), so the statement follows the models as the ORM would.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections, models

from events.models import Event, EventConfiguration, EventDelivery, EventStatusChange
from messages.models import Delivery


def _quote(name: str | None) -> str:
    assert name, "a table or column name"
    return connection.ops.quote_name(name)


def _prepared(model: type[models.Model], values: Mapping[str, Any]) -> tuple[list[str], list[Any]]:
    """Quoted columns and database values for `values`, keyed by field name."""
    columns, params = [], []
    for name, value in values.items():
        field = model._meta.get_field(name)
        assert isinstance(field, models.Field) and field.concrete, name
        if field.is_relation and isinstance(value, models.Model):
            value = value.pk
        columns.append(_quote(field.column))
        params.append(field.get_db_prep_save(value, connection))
    return columns, params


def _insert_values(row: models.Model) -> tuple[list[str], list[Any]]:
    """The columns and values an INSERT of `row` writes (its id left to the database)."""
    values = {
        field.name: field.pre_save(row, add=True)
        for field in row._meta.local_concrete_fields
        if not field.primary_key
    }
    return _prepared(type(row), values)


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
        f"{_quote(configuration.get_field(name).column)} = %s" for name in ("id", "status", "published_at")
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
    set_columns, set_params = _prepared(Event, changes)
    assignments = ", ".join(f"{column} = %s" for column in set_columns)
    meta = Event._meta
    where = [f"{_quote(meta.pk.column)} = %s", f"{_quote(meta.get_field('status').column)} = %s"]
    where_params: list[Any] = [event_id, source]
    if lease is not None:
        where.append(f"{_quote(meta.get_field('lease_expires_at').column)} = %s")
        where_params.extend(_prepared(Event, {"lease_expires_at": lease})[1])
    parts = [
        f"moved AS (UPDATE {_quote(meta.db_table)} SET {assignments} WHERE {' AND '.join(where)} RETURNING 1)"
    ]
    params: list[Any] = [*set_params, *where_params]
    # The history row only if the event moved: INSERT ... SELECT ... FROM moved.
    history_columns, history_params = _insert_values(history)
    placeholders = ", ".join(["%s"] * len(history_columns))
    parts.append(
        f"history AS (INSERT INTO {_quote(EventStatusChange._meta.db_table)} ({', '.join(history_columns)}) "
        f"SELECT {placeholders} FROM moved)"
    )
    params.extend(history_params)
    # The delivery and its link to the event whatever the move's outcome: a send that happened
    # stays recorded, and the next attempt finds it through the link.
    if delivery is not None:
        columns, values = _insert_values(delivery)
        placeholders = ", ".join(["%s"] * len(columns))
        parts.append(
            f"delivery AS (INSERT INTO {_quote(Delivery._meta.db_table)} ({', '.join(columns)}) "
            f"VALUES ({placeholders}) RETURNING {_quote(Delivery._meta.pk.column)})"
        )
        params.extend(values)
        link = EventDelivery._meta
        parts.append(
            f"link AS (INSERT INTO {_quote(link.db_table)} "
            f"({_quote(link.get_field('delivery').column)}, {_quote(link.get_field('event').column)}) "
            f"SELECT {_quote(Delivery._meta.pk.column)}, %s FROM delivery)"
        )
        params.append(event_id)
    return f"WITH {', '.join(parts)} SELECT count(*) FROM moved", params
