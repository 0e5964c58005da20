"""The quarantine holds any address a channel takes (a push registration token is up to 4096
characters): its uniqueness and lookups use a digest of the address, since a PostgreSQL btree
entry holds about 2700 bytes. Entries whose addresses differ only in case become one (the oldest)."""

import hashlib

from django.db import migrations, models


BATCH = 1000  # rows per UPDATE (bulk_update) and DELETE: a large quarantine in few statements


def fill_digests(apps, schema_editor):
    Quarantine = apps.get_model("campaign", "Quarantine")
    seen: set[tuple[int, str, str]] = set()
    doubles: list[int] = []
    digested = []
    rows = Quarantine.objects.order_by("created_at", "pk").values_list("pk", "organization_id", "channel", "address")
    for pk, organization_id, channel, address in rows.iterator(chunk_size=BATCH):
        digest = hashlib.sha256(address.lower().encode()).hexdigest()
        key = (organization_id, channel, digest)
        if key in seen:
            doubles.append(pk)
            continue
        seen.add(key)
        digested.append(Quarantine(pk=pk, address_digest=digest))
    for start in range(0, len(doubles), BATCH):
        Quarantine.objects.filter(pk__in=doubles[start : start + BATCH]).delete()
    Quarantine.objects.bulk_update(digested, ["address_digest"], batch_size=BATCH)


class Migration(migrations.Migration):
    dependencies = [("campaign", "0010_organization_sms_sender")]

    operations = [
        migrations.RemoveConstraint(model_name="quarantine", name="quarantine_unique_address"),
        migrations.AlterField(
            model_name="quarantine", name="address", field=models.CharField(max_length=4096)
        ),
        migrations.AddField(
            model_name="quarantine",
            name="address_digest",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(fill_digests, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="quarantine",
            constraint=models.UniqueConstraint(
                fields=("organization", "channel", "address_digest"),
                name="quarantine_unique_address",
                violation_error_message="This address is already quarantined: an entry already exists.",
            ),
        ),
    ]
