"""The events table wakes an idle dispatcher (events.dispatch): on PostgreSQL, an INSERT into it
NOTIFYs `events_due` when it commits, if a dispatcher said it sleeps (events_dispatchersleep).
Elsewhere (SQLite) the dispatcher polls, and the trigger is not created."""

from django.db import migrations, models

CREATE = """
CREATE OR REPLACE FUNCTION events_event_notify_due() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM events_dispatchersleep WHERE asleep_until > now()) THEN
        PERFORM pg_notify('events_due', '');
    END IF;
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

    operations = [
        migrations.CreateModel(
            name="DispatcherSleep",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("asleep_until", models.DateTimeField(blank=True, null=True)),
            ],
        ),
        migrations.RunPython(create_trigger, drop_trigger, elidable=False),
    ]
