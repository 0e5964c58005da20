"""One index fewer to write per event: the configuration's own index goes (event_list_idx starts
with the configuration)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("events", "0010_event_sent_again_from")]

    operations = [
        migrations.AlterField(
            model_name="event",
            name="configuration",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="events",
                to="events.eventconfiguration",
            ),
        ),
    ]
