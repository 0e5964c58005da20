"""The Celery app. Its queues, routes and the sweep's beat schedule are CELERY_* settings, read lazily,
so that a settings module may import `campaign.settings` (e.g. bench/settings.py)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "campaign.settings")

app = Celery("campaign")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["campaign", "events"])
