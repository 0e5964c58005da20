"""The events table wakes the dispatcher (events.dispatch): on PostgreSQL, each INSERT statement
into it NOTIFYs `events_due`, delivered when the transaction commits. Elsewhere (SQLite) the
dispatcher polls, and this migration does nothing."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION events_event_notify_due() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('events_due', '');
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS events_event_notify_due ON events_event;
CREATE TRIGGER events_event_notify_due AFTER INSERT ON events_event
    FOR EACH STATEMENT EXECUTE FUNCTION events_event_notify_due();
"""

DROP = """
DROP TRIGGER IF EXISTS events_event_notify_due ON events_event;
DROP FUNCTION IF EXISTS events_event_notify_due();
"""


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("events", "0008_rollups")]

    operations = [migrations.RunPython(create_trigger, drop_trigger, elidable=False)]
