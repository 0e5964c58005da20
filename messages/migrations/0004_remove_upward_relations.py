"""Issue 12, step 3 of 3: the columns of messages that pointed up to events go, now that events
0005 declares the same relations pointing down and holds their data. Stepping back re-adds them
(nullable, as transactional 0003 left them) and events 0005 refills them."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0005_relations_declared_above"),
        ("transactional", "0003_relations_declared_above"),
    ]

    operations = [
        migrations.RemoveField(model_name="delivery", name="event"),
        migrations.RemoveField(model_name="transactionalmessage", name="configuration"),
    ]
