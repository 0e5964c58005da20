"""A profile's single opt-out flag becomes one per channel (email, SMS, push): a profile that had
opted out is opted out of all three."""

from django.db import migrations, models


def copy_opt_out(apps, schema_editor):
    Profile = apps.get_model("campaign", "Profile")
    Profile.objects.filter(opted_out=True).update(
        opted_out_email=True, opted_out_sms=True, opted_out_push=True
    )


def copy_back(apps, schema_editor):
    Profile = apps.get_model("campaign", "Profile")
    Profile.objects.filter(opted_out_email=True, opted_out_sms=True, opted_out_push=True).update(
        opted_out=True
    )


class Migration(migrations.Migration):
    dependencies = [
        ("campaign", "0007_organization_time_zone"),
    ]

    operations = [
        migrations.AddField(
            model_name="profile",
            name="opted_out_email",
            field=models.BooleanField(default=False, verbose_name="opted out of email"),
        ),
        migrations.AddField(
            model_name="profile",
            name="opted_out_push",
            field=models.BooleanField(default=False, verbose_name="opted out of push"),
        ),
        migrations.AddField(
            model_name="profile",
            name="opted_out_sms",
            field=models.BooleanField(default=False, verbose_name="opted out of SMS"),
        ),
        migrations.RunPython(copy_opt_out, copy_back),
        migrations.RemoveField(
            model_name="profile",
            name="opted_out",
        ),
    ]
