"""The Celery app. Its queues, routes and the sweep's beat schedule are CELERY_* settings, read lazily,
so that a settings module may import `campaign.settings` (e.g. bench/settings.py)."""

import os

from celery import Celery, Task
from celery.signals import task_prerun
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "campaign.settings")

app = Celery("campaign")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["campaign", "events"])


@task_prerun.connect
def _recycle_database_connections(sender: Task, **kwargs: object) -> None:
    """A task starts as a request does: a connection past CONN_MAX_AGE, or broken, is replaced
    (CELERY_DB_REUSE_MAX keeps Celery from closing every connection after every task). Not for
    a task run eagerly, inside its caller's transaction."""
    if not getattr(sender.request, "is_eager", False):
        close_old_connections()
