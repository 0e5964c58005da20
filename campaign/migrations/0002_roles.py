"""The two roles, Administrators and Marketers, as groups with their permissions."""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def create_roles(apps, schema_editor):
    # Permissions are normally made after all migrations; make them now so the groups can hold them.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    from campaign.roles import sync_roles

    # Models of later migrations have no permissions yet: their own migration syncs the roles again.
    sync_roles(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"), missing_ok=True)


def remove_roles(apps, schema_editor):
    from campaign.roles import ROLE_NAMES

    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_NAMES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("campaign", "0001_initial"),
        ("events", "0002_initial"),
        ("transactional", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
