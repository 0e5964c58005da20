"""A receipt is kept once per provider, message id, status and error code, enforced by the
database (two identical callbacks at once could both insert). Duplicates already kept go first:
the oldest stays, joined to the delivery a later copy found if it had none."""

from django.db import migrations, models


def drop_duplicates(apps, schema_editor):
    SmsReceipt = apps.get_model("transactional", "SmsReceipt")
    kept: dict[tuple[str, str, str, str], tuple[int, int | None]] = {}
    duplicates: list[int] = []
    rows = SmsReceipt.objects.order_by("id").values_list(
        "id", "provider", "message_id", "status", "error_code", "delivery_id"
    )
    for pk, provider, message_id, status, error_code, delivery_id in rows.iterator():
        key = (provider, message_id, status, error_code)
        if key not in kept:
            kept[key] = (pk, delivery_id)
            continue
        duplicates.append(pk)
        first_pk, first_delivery = kept[key]
        if first_delivery is None and delivery_id is not None:
            SmsReceipt.objects.filter(pk=first_pk).update(delivery_id=delivery_id)
            kept[key] = (first_pk, delivery_id)
    for start in range(0, len(duplicates), 500):
        SmsReceipt.objects.filter(pk__in=duplicates[start : start + 500]).delete()


class Migration(migrations.Migration):
    # The clean-up commits before the constraint is added: PostgreSQL refuses an ALTER TABLE in a
    # transaction with deferred foreign-key checks pending (those of the delivery links just set).
    atomic = False

    dependencies = [("transactional", "0014_provider_events")]

    operations = [
        migrations.RunPython(drop_duplicates, migrations.RunPython.noop, atomic=True),
        migrations.AddConstraint(
            model_name="smsreceipt",
            constraint=models.UniqueConstraint(
                fields=("provider", "message_id", "status", "error_code"), name="sms_receipt_unique"
            ),
        ),
    ]
