"""Issue 12, step 2 of 3: each relation between events and messages is declared here, in the app
above, pointing down.

- `EventConfiguration.message` (one-to-one, read back as `message.configuration`) replaces
  `TransactionalMessage.configuration`.
- `EventDelivery` links a delivery to the event that caused it, and `Event.deliveries` is the
  many-to-many through it (read back as `delivery.events`), replacing `Delivery.event`. A link
  table rather than a column on the delivery: deliveries belong to messages (a proof has no event)
  and a column pointing at events would be messages knowing events again. The delivery is the
  link's key, so a delivery has at most one event, as before.

The rows are copied both ways (INSERT ... SELECT for the deliveries, which may be many); the old
columns go in transactional 0004."""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def check_now(schema_editor):
    """PostgreSQL defers the foreign key checks of the rows just written to the commit, and refuses
    to alter a table with checks pending: run them now, before this migration alters the tables."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def forward(apps, schema_editor):
    Configuration = apps.get_model("events", "EventConfiguration")
    Message = apps.get_model("transactional", "TransactionalMessage")
    Delivery = apps.get_model("transactional", "Delivery")
    EventDelivery = apps.get_model("events", "EventDelivery")
    message = Message.objects.filter(configuration_id=OuterRef("pk")).values("pk")[:1]
    Configuration.objects.update(message_id=Subquery(message))
    quote = schema_editor.quote_name
    delivery_event = Delivery._meta.get_field("event").column
    schema_editor.execute(
        f"INSERT INTO {quote(EventDelivery._meta.db_table)} "
        f"({quote(EventDelivery._meta.get_field('delivery').column)}, "
        f"{quote(EventDelivery._meta.get_field('event').column)}) "
        f"SELECT {quote(Delivery._meta.pk.column)}, {quote(delivery_event)} "
        f"FROM {quote(Delivery._meta.db_table)} WHERE {quote(delivery_event)} IS NOT NULL"
    )
    check_now(schema_editor)


def backward(apps, schema_editor):
    Configuration = apps.get_model("events", "EventConfiguration")
    Message = apps.get_model("transactional", "TransactionalMessage")
    Delivery = apps.get_model("transactional", "Delivery")
    EventDelivery = apps.get_model("events", "EventDelivery")
    configuration = Configuration.objects.filter(message_id=OuterRef("pk")).values("pk")[:1]
    Message.objects.update(configuration_id=Subquery(configuration))
    event = EventDelivery.objects.filter(delivery_id=OuterRef("pk")).values("event_id")[:1]
    Delivery.objects.filter(pk__in=EventDelivery.objects.values("delivery_id")).update(
        event_id=Subquery(event)
    )
    check_now(schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0004_status_history"),
        ("transactional", "0003_relations_declared_above"),
    ]

    operations = [
        migrations.AddField(
            model_name="eventconfiguration",
            name="message",
            field=models.OneToOneField(
                blank=True,
                editable=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="configuration",
                to="transactional.transactionalmessage",
            ),
        ),
        migrations.CreateModel(
            name="EventDelivery",
            fields=[
                (
                    "delivery",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="event_link",
                        serialize=False,
                        to="transactional.delivery",
                    ),
                ),
                (
                    "event",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="delivery_links",
                        to="events.event",
                    ),
                ),
            ],
            options={"verbose_name": "event delivery"},
        ),
        migrations.AddField(
            model_name="event",
            name="deliveries",
            field=models.ManyToManyField(
                blank=True, related_name="events", through="events.EventDelivery", to="transactional.delivery"
            ),
        ),
        migrations.RunPython(forward, backward),
    ]
