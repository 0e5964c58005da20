"""Deployment checks of our own, run by `manage.py check --deploy`."""

from django.conf import settings
from django.core.checks import Error, Warning, register


@register(deploy=True)
def production_settings(app_configs, **kwargs):
    problems = []
    if settings.SECRET_KEY == settings.DEVELOPMENT_SECRET_KEY:
        problems.append(
            Error(
                "SECRET_KEY is the development key.",
                hint="Set SECRET_KEY in the environment.",
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
    return problems
