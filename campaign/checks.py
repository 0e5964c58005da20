"""Deployment checks of our own, run by `manage.py check --deploy`."""

from django.conf import settings
from django.core.checks import Error, Warning, register


@register(deploy=True)
def production_settings(app_configs, **kwargs):
    problems = []
    if settings.SECRET_KEY_FILE is not None:
        problems.append(
            Error(
                f"SECRET_KEY was generated on this machine ({settings.SECRET_KEY_FILE}).",
                hint="Set SECRET_KEY in the environment (or ENV_FILE): one key, the same on every machine.",
                id="campaign.E001",
            )
        )
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        problems.append(
            Warning(
                "The Celery broker is the embedded filesystem transport (one machine only).",
                hint="Set CELERY_BROKER_URL=redis://...",
                id="campaign.W001",
            )
        )
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        problems.append(
            Warning(
                "The database is SQLite (one machine only).",
                hint="Set DATABASE_URL=postgres://...",
                id="campaign.W002",
            )
        )
    if not settings.ENCRYPTION_KEYS:
        problems.append(
            Warning(
                "ENCRYPTION_KEYS is not set: stored secrets (webhook signing secrets, the values of "
                "sensitive fields) are encrypted with a key derived from SECRET_KEY.",
                hint="Set ENCRYPTION_KEYS to one or more Fernet keys (campaign.encryption).",
                id="campaign.W003",
            )
        )
    anymail = getattr(settings, "ANYMAIL", None) or {}
    if settings.EMAIL_BACKEND.startswith("anymail.") and not anymail.get("WEBHOOK_SECRET"):
        problems.append(
            Warning(
                "Email goes through a provider (anymail) but ANYMAIL_WEBHOOK_SECRET is not set: its "
                "webhooks under /anymail/ answer 404, so its bounces and complaints are not received.",
                hint="Set ANYMAIL_WEBHOOK_SECRET=user:long-random-password and put it in the provider's "
                "webhook URL (README: Email through a provider).",
                id="campaign.W004",
            )
        )
    return problems
