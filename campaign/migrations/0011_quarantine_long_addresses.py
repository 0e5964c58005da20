"""The quarantine holds any address a channel takes (a push registration token is up to 4096
characters): its uniqueness and lookups use a digest of the address, since a PostgreSQL btree
entry holds about 2700 bytes. Entries whose addresses differ only in case become one (the oldest)."""

import hashlib

from django.db import migrations, models


def fill_digests(apps, schema_editor):
    Quarantine = apps.get_model("campaign", "Quarantine")
    seen: set[tuple[int, str, str]] = set()
    for entry in Quarantine.objects.order_by("created_at", "pk").iterator():
        digest = hashlib.sha256(entry.address.lower().encode()).hexdigest()
        key = (entry.organization_id, entry.channel, digest)
        if key in seen:
            entry.delete()
            continue
        seen.add(key)
        Quarantine.objects.filter(pk=entry.pk).update(address_digest=digest)


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
