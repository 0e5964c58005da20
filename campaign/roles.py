"""The two roles, as groups: what each may do in the admin. The data migration and `demo` use this."""

ADMINISTRATORS = "Administrators"
MARKETERS = "Marketers"
ROLE_NAMES = (ADMINISTRATORS, MARKETERS)

# (app_label, model): actions
ROLE_PERMISSIONS: dict[str, dict[tuple[str, str], tuple[str, ...]]] = {
    ADMINISTRATORS: {
        ("campaign", "organization"): ("view", "change"),
        ("campaign", "apicredential"): ("view", "add", "change", "delete"),
        ("campaign", "accesstoken"): ("view", "delete"),
        ("campaign", "profile"): ("view", "add", "change", "delete"),
        ("campaign", "senderdomain"): ("view", "add", "change", "delete"),
        ("campaign", "proofrecipient"): ("view", "add", "change", "delete"),
        ("campaign", "quarantine"): ("view", "add", "change", "delete"),
        ("campaign", "customresource"): ("view",),
        ("campaign", "customresourcerow"): ("view",),
        ("auth", "user"): ("view", "add", "change", "delete"),
        ("events", "eventconfiguration"): ("view", "add", "change", "delete"),
        ("events", "eventfield"): ("view", "add", "change", "delete"),
        ("events", "enrichment"): ("view", "add", "change", "delete"),
        ("events", "profilesample"): ("view", "add", "change", "delete"),
        ("events", "event"): ("view",),
        ("events", "typology"): ("view", "add", "change", "delete"),
        ("events", "typologyrule"): ("view", "add", "change", "delete"),
        ("events", "filtercondition"): ("view", "add", "change", "delete"),
        ("events", "fatiguerule"): ("view", "add", "change", "delete"),
        ("transactional", "transactionalmessage"): ("view", "change", "delete"),
        ("transactional", "messageversion"): ("view",),
        ("transactional", "delivery"): ("view",),
        ("transactional", "messagestatuschange"): ("view",),
        ("events", "configurationstatuschange"): ("view",),
        ("events", "webhookendpoint"): ("view", "add", "change", "delete"),
        ("events", "webhooknotification"): ("view",),
        ("transactional", "organizationprovider"): ("view", "add", "change", "delete"),
    },
    MARKETERS: {
        ("transactional", "transactionalmessage"): ("view", "change"),
        ("transactional", "messageversion"): ("view",),
        ("transactional", "delivery"): ("view",),
        ("transactional", "messagestatuschange"): ("view",),
        ("events", "event"): ("view",),
    },
}


def sync_roles(group_model, permission_model, *, missing_ok: bool = False) -> None:
    """Create or update the role groups with exactly their permissions (idempotent).

    A data migration runs this with `missing_ok`: the models of later migrations have no
    permissions yet at that point, and the migration that creates them syncs the roles again."""
    for role, grants in ROLE_PERMISSIONS.items():
        group, _ = group_model.objects.get_or_create(name=role)
        permissions = []
        for (app_label, model), actions in grants.items():
            for action in actions:
                found = permission_model.objects.filter(
                    content_type__app_label=app_label, codename=f"{action}_{model}"
                ).first()
                if found is None and not missing_ok:
                    raise permission_model.DoesNotExist(f"{app_label}.{action}_{model}")
                if found is not None:
                    permissions.append(found)
        group.permissions.set(permissions)


def sync_roles_in_migration(apps, schema_editor) -> None:
    """A migration that adds models the roles name: their permissions made now (Django makes them
    only after the whole migrate), then the roles synced."""
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    sync_roles(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"), missing_ok=True)
