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
        ("campaign", "quarantine"): ("view", "add", "change", "delete"),
        ("auth", "user"): ("view", "add", "change", "delete"),
        ("events", "eventconfiguration"): ("view", "add", "change", "delete"),
        ("events", "eventfield"): ("view", "add", "change", "delete"),
        ("events", "event"): ("view",),
        ("transactional", "transactionalmessage"): ("view", "change", "delete"),
        ("transactional", "messageversion"): ("view",),
        ("transactional", "delivery"): ("view",),
    },
    MARKETERS: {
        ("transactional", "transactionalmessage"): ("view", "change"),
        ("transactional", "messageversion"): ("view",),
        ("transactional", "delivery"): ("view",),
        ("events", "event"): ("view",),
    },
}


def sync_roles(group_model, permission_model) -> None:
    """Create or update the role groups with exactly their permissions (idempotent)."""
    for role, grants in ROLE_PERMISSIONS.items():
        group, _ = group_model.objects.get_or_create(name=role)
        permissions = []
        for (app_label, model), actions in grants.items():
            for action in actions:
                permissions.append(
                    permission_model.objects.get(
                        content_type__app_label=app_label, codename=f"{action}_{model}"
                    )
                )
        group.permissions.set(permissions)
