"""Issue 12, step 1 of 3: the relations of messages that point up to events are about to move to
the events app (events 0005 declares them and copies the data; transactional 0004 drops the old
columns). Here: the old relations give up their reverse names (`message`, `deliveries`) for the
new ones, `configuration` becomes nullable so that stepping back can refill it row by row, and a
message gets its own `channel`, copied from its configuration (it never changes after creation)."""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def copy_channels(apps, schema_editor):
    Message = apps.get_model("transactional", "TransactionalMessage")
    Configuration = apps.get_model("events", "EventConfiguration")
    channel = Configuration.objects.filter(pk=OuterRef("configuration_id")).values("channel")[:1]
    Message.objects.update(channel=Subquery(channel))


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0004_status_history"),
        ("transactional", "0002_status_history"),
    ]

    operations = [
        migrations.AlterField(
            model_name="transactionalmessage",
            name="configuration",
            field=models.OneToOneField(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="events.eventconfiguration",
            ),
        ),
        migrations.AlterField(
            model_name="delivery",
            name="event",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="events.event",
            ),
        ),
        migrations.AddField(
            model_name="transactionalmessage",
            name="channel",
            field=models.CharField(
                choices=[("email", "Email"), ("sms", "SMS"), ("push", "Push notification")],
                default="email",
                editable=False,
                max_length=8,
            ),
            preserve_default=False,
        ),
        migrations.RunPython(copy_channels, migrations.RunPython.noop),
    ]
