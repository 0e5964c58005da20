"""Thin Celery tasks: they take ids, re-read the rows, and call the pipeline or the sweep."""

from celery import shared_task
from django.conf import settings

from events import pipeline, retention, rollups, webhooks
from events.sweep import recover


@shared_task(
    name="events.process_events",
    ignore_result=True,
    # Past the soft limit the batch stops and hands its events back (pipeline._Batch._out_of_time); past
    # the hard one the pool kills the process, and the sweep takes the events over when their
    # leases run out.
    soft_time_limit=settings.EVENT_TASK_SOFT_TIME_LIMIT_SECONDS,
    time_limit=settings.EVENT_TASK_TIME_LIMIT_SECONDS,
)
def process_events(event_ids: list[int]) -> None:
    """These events, and the due events a backlog left waiting, in one batch (claims.claim_due);
    while a backlog waits, more of it, for up to EVENT_BATCH_SECONDS."""
    pipeline.process_batch(event_ids, keep_going_for=settings.EVENT_BATCH_SECONDS)


@shared_task(name="events.sweep", ignore_result=True)
def sweep() -> dict[str, int]:
    return recover()


@shared_task(name="events.refresh_rollups", ignore_result=True)
def refresh_rollups() -> int:
    """The reports' hourly counts, for the hours touched since the last run (events.rollups)."""
    return rollups.refresh()


@shared_task(name="events.purge_history", ignore_result=True)
def purge_history() -> dict[str, int]:
    """The beat's purge of what is past retention, bounded per run (events.retention)."""
    return retention.purge(max_batches=settings.RETENTION_MAX_BATCHES)


@shared_task(name="events.webhooks", ignore_result=True)
def send_webhooks() -> dict[str, int]:
    """Status webhooks: store the notifications of what happened since the last run, send the due
    ones (events.webhooks)."""
    return webhooks.run()
