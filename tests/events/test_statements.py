"""events.statements writes the recording statement out from the models' metadata: its tables and
columns follow the models, and each value has its placeholder (the behaviour on PostgreSQL is in
test_transitions: one statement, history only if moved, the delivery whatever happened)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone

from events.models import Event, EventDelivery, EventStatusChange
from events.statements import record_move_sql
from messages.models import Delivery

pytestmark = pytest.mark.django_db


def test_the_statement_names_the_models_tables_and_has_a_placeholder_per_value(cart_configuration):
    message = cart_configuration.message
    now = timezone.now()
    lease = now + dt.timedelta(seconds=30)
    delivery = Delivery(
        organization_id=cart_configuration.organization_id, message=message, channel="email",
        recipient="a@example.com", outcome="sent",
    )  # fmt: skip
    sql, params = record_move_sql(
        event_id=7,
        source="processing",
        lease=lease,
        changes={"status": "processed", "updated_at": now, "message_version": message.live_version},
        history=EventStatusChange(event_id=7, from_status="processing", to_status="processed"),
        delivery=delivery,
    )
    quote = connection.ops.quote_name
    assert sql.startswith(f"WITH moved AS (UPDATE {quote(Event._meta.db_table)} SET ")
    assert f"INSERT INTO {quote(EventStatusChange._meta.db_table)}" in sql
    assert f"INSERT INTO {quote(Delivery._meta.db_table)}" in sql
    # The delivery's link to its event, from the id the delivery's INSERT returns, for event 7.
    assert f"RETURNING {quote('id')})" in sql
    assert (
        f"INSERT INTO {quote(EventDelivery._meta.db_table)} ({quote('delivery_id')}, {quote('event_id')})"
        in sql
    )
    assert "SELECT " + quote("id") + ", %s FROM delivery)" in sql and params[-1] == 7
    assert quote("message_version_id") in sql and quote("lease_expires_at") in sql
    assert sql.count("%s") == len(params)
    assert params[2] == message.live_version.pk  # a related model becomes its key
    assert sql.endswith("SELECT count(*) FROM moved")


def test_without_a_delivery_the_statement_moves_the_event_and_writes_its_history_only():
    sql, params = record_move_sql(
        event_id=7,
        source="processing",
        lease=None,
        changes={"status": "deliveryFailed"},
        history=EventStatusChange(event_id=7, from_status="processing", to_status="deliveryFailed"),
        delivery=None,
    )
    assert "INSERT INTO" in sql and sql.count("INSERT INTO") == 1
    assert connection.ops.quote_name(EventDelivery._meta.db_table) not in sql
    assert sql.count("%s") == len(params)


def test_the_conditional_insert_writes_every_column_but_the_id_and_checks_the_publication(
    cart_configuration,
):
    from events.statements import insert_event_if_published_sql

    event = Event(
        organization_id=cart_configuration.organization_id,
        configuration=cart_configuration,
        email="a@example.com",
        next_attempt_at=timezone.now(),
    )
    sql, params = insert_event_if_published_sql(event, published_at=cart_configuration.published_at)
    quote = connection.ops.quote_name
    columns = [quote(f.column) for f in Event._meta.concrete_fields if not f.primary_key]
    assert sql.startswith(f"INSERT INTO {quote(Event._meta.db_table)} ({', '.join(columns)}) SELECT ")
    assert f"WHERE EXISTS (SELECT 1 FROM {quote('events_eventconfiguration')} WHERE " in sql
    assert sql.endswith(f"RETURNING {quote('id')}")
    assert sql.count("%s") == len(params) == len(columns) + 3
    assert params[-3:-1] == [cart_configuration.pk, "published"]
    assert event.created_at is not None  # auto_now fields filled in, as save() fills them
