"""The Celery app: transactional work on its own queue, and the beat schedule of the sweep."""

import os

from celery import Celery
from django.conf import settings
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "campaign.settings")

app = Celery("campaign")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["events"])


_queue = settings.CELERY_TRANSACTIONAL_QUEUE
# A plain `celery -A campaign worker` consumes both queues; a dedicated worker can take `-Q transactional`.
app.conf.task_queues = (Queue(settings.CELERY_TASK_DEFAULT_QUEUE), Queue(_queue))
app.conf.task_routes = {"events.process_event": {"queue": _queue}, "events.sweep": {"queue": _queue}}
app.conf.beat_schedule = {
    "sweep": {
        "task": "events.sweep",
        "schedule": settings.SWEEP_INTERVAL_SECONDS,
        # A sweep that waited longer than the next one is pointless: drop it.
        "options": {"expires": settings.SWEEP_INTERVAL_SECONDS * 2},
    },
}
