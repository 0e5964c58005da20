"""Provider data per organization: an SMS receipt names its organization (known from the provider it
came through, or from its delivery) and its provider's own key, both in its unique key (two SMSCs
numbering alike keep two rows); a provider event is unique per organization. Existing receipts
joined to a delivery take its organization; the others stay unknown (null) and keep their old key."""

import django.db.models.deletion

from django.db import migrations, models


def organization_of_delivery(apps, schema_editor):
    SmsReceipt = apps.get_model("transactional", "SmsReceipt")
    Delivery = apps.get_model("transactional", "Delivery")
    SmsReceipt.objects.filter(delivery__isnull=False).update(
        organization_id=models.Subquery(
            Delivery.objects.filter(pk=models.OuterRef("delivery_id")).values("organization_id")[:1]
        )
    )


class Migration(migrations.Migration):
    # As 0015: PostgreSQL refuses an ALTER TABLE after the backfill in one transaction (deferred
    # foreign-key checks pending), so each step commits.
    atomic = False

    dependencies = [
        ('campaign', '0011_quarantine_long_addresses'),
        ('transactional', '0016_organization_providers'),
    ]

    operations = [
        migrations.AddField(
            model_name='smsreceipt',
            name='organization',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='campaign.organization'),
        ),
        migrations.AlterField(
            model_name='smsreceipt',
            name='provider',
            field=models.CharField(max_length=64),
        ),
        migrations.RunPython(organization_of_delivery, migrations.RunPython.noop, atomic=True),
        migrations.AddConstraint(
            model_name='providerevent',
            constraint=models.UniqueConstraint(fields=('organization', 'provider', 'provider_event_id'), name='provider_event_unique_id_org'),
        ),
        migrations.AddConstraint(
            model_name='smsreceipt',
            constraint=models.UniqueConstraint(condition=models.Q(('organization__isnull', False)), fields=('organization', 'provider', 'message_id', 'status', 'error_code'), name='sms_receipt_unique_org'),
        ),
        migrations.AddConstraint(
            model_name='smsreceipt',
            constraint=models.UniqueConstraint(condition=models.Q(('organization__isnull', True)), fields=('provider', 'message_id', 'status', 'error_code'), name='sms_receipt_unique_unknown'),
        ),
        # The old keys go last: they imply the new ones, so no moment is without a unique key.
        migrations.RemoveConstraint(
            model_name='providerevent',
            name='provider_event_unique_id',
        ),
        migrations.RemoveConstraint(
            model_name='smsreceipt',
            name='sms_receipt_unique',
        ),
    ]
