"""The Django project. Importing it loads the Celery app so that tasks bind to it."""

from campaign.celery import app as celery_app

__all__ = ["celery_app"]
